"""The scikit-learn estimators: parameters, validation, fit / partial_fit / predict.

The math lives in the backends (``fastmlp/backends/{cpu,cuda}``); this module
turns scikit-learn conventions into flat buffers and back.  A fitted model
holds only NumPy arrays and plain values, so it pickles and predicts on any
backend.

The objective is scikit-learn's, number for number: mean cross-entropy
(multiclass), mean summed binary cross-entropy (binary, multilabel), half
mean squared error (regression), plus ``alpha / (2 sum(w))`` times the sum of
squared weights.  With ``dtype="float64"`` and the same ``random_state`` the
initial weights, the shuffling and the validation split draw the same random
numbers as scikit-learn's MLP.
"""

import numbers
import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, shuffle as sk_shuffle
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight, check_is_fitted, column_or_1d, validate_data,
)

from . import _fastpath
from ._callbacks import CallbackSupportMixin, EpochCallbacks, with_callbacks
from ._registry import ACTIVATIONS, OUTPUTS, SOLVERS, resolve_activation
from .backends import BACKENDS, get_backend
from .backends.layout import LR, OptimizerState, is_packed_view, make_layout, pack, unpack

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _check_number(name, value, *, integer=False, low=None, high=None,
                  low_open=False, high_open=False):
    """Raise a TypeError/ValueError naming ``name`` unless value is a number in range."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__}).")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if low is not None and (value < low or (low_open and value == low)):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {value!r}.")
    if high is not None and (value > high or (high_open and value == high)):
        op = "<" if high_open else "<="
        raise ValueError(f"{name} must be {op} {high}, got {value!r}.")


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")


class _BaseMLP(CallbackSupportMixin, BaseEstimator):
    """Shared machinery of MLPClassifier and MLPRegressor."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        backend="auto",
        dtype="float32",
        negative_slope=0.01,
        prelu_init=0.25,
        elu_alpha=1.0,
        maxout_pieces=2,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype
        self.negative_slope = negative_slope
        self.prelu_init = prelu_init
        self.elu_alpha = elu_alpha
        self.maxout_pieces = maxout_pieces

    # ------------------------------------------------------------------ params
    def _hidden_sizes(self):
        h = self.hidden_layer_sizes
        if isinstance(h, numbers.Integral) and not isinstance(h, bool):
            h = [h]
        try:
            h = list(h)
        except TypeError:
            raise TypeError(
                f"hidden_layer_sizes must be an int or a sequence of ints, got {h!r}."
            ) from None
        for s in h:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral):
                raise TypeError(f"hidden_layer_sizes must contain integers, got {h!r}.")
        if any(s <= 0 for s in h):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {h}.")
        return [int(s) for s in h]

    def _validate_params(self):
        """Check every constructor parameter; raise errors that name the parameter."""
        self._hidden_sizes()
        self._activation_name = resolve_activation(self.activation)
        _check_choice("solver", self.solver, list(SOLVERS))
        _check_choice("learning_rate", self.learning_rate, ["constant", "invscaling", "adaptive"])
        _check_choice("backend", self.backend, list(BACKENDS))
        _check_choice("dtype", self.dtype, list(_DTYPES))
        _check_number("alpha", self.alpha, low=0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if isinstance(self.batch_size, str):
                raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}.")
            _check_number("batch_size", self.batch_size, integer=True, low=1)
        _check_number("learning_rate_init", self.learning_rate_init, low=0.0, low_open=True)
        _check_number("power_t", self.power_t)
        _check_number("max_iter", self.max_iter, integer=True, low=1)
        _check_number("tol", self.tol, low=0.0)
        _check_number("momentum", self.momentum, low=0.0, high=1.0)
        _check_number("validation_fraction", self.validation_fraction, low=0.0, high=1.0,
                      low_open=True, high_open=True)
        _check_number("beta_1", self.beta_1, low=0.0, high=1.0, high_open=True)
        _check_number("beta_2", self.beta_2, low=0.0, high=1.0, high_open=True)
        _check_number("epsilon", self.epsilon, low=0.0, low_open=True)
        _check_number("n_iter_no_change", self.n_iter_no_change, integer=True, low=1)
        _check_number("negative_slope", self.negative_slope, low=0.0)
        _check_number("prelu_init", self.prelu_init)
        _check_number("elu_alpha", self.elu_alpha, low=0.0, low_open=True)
        _check_number("maxout_pieces", self.maxout_pieces, integer=True, low=2)
        for flag in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}.")
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"verbose must be a bool or an int, got {self.verbose!r}.")

    def _activation_param(self):
        name = self._activation_name
        if name == "leaky_relu":
            return float(self.negative_slope)
        if name == "elu":
            return float(self.elu_alpha)
        return 0.0

    # ------------------------------------------------------------------ data
    def _validate_X(self, X, reset):
        X = validate_data(
            self, X, reset=reset, accept_sparse=["csr", "csc", "coo"],
            dtype=_DTYPES[self.dtype] if reset else (np.float64, np.float32),
            ensure_min_samples=1,
        )
        return X

    def _validate_Xy(self, X, y, reset):
        X, y = validate_data(
            self, X, y, reset=reset, accept_sparse=["csr", "csc", "coo"],
            multi_output=True, dtype=(np.float64, np.float32), y_numeric=not is_classifier(self),
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # DataConversionWarning, as scikit-learn
        return X, y

    def _dense(self, X, dtype):
        if sp.issparse(X):
            X = X.toarray()
        return np.ascontiguousarray(X, dtype=dtype)

    # ------------------------------------------------------------------ params <-> flat vector
    def _init_theta(self, spec, rng):
        """Glorot-uniform weights and biases, drawn in scikit-learn's order and precision."""
        theta = np.empty(spec.n_params, dtype=spec.dtype)
        coefs, intercepts, slopes = unpack(spec, theta)
        factor = ACTIVATIONS[spec.activation].init_factor
        for l, (fi, zc) in enumerate(spec.coef_shapes()):
            bound = np.sqrt(factor / (fi + zc))
            coefs[l][...] = rng.uniform(-bound, bound, (fi, zc))
            intercepts[l][...] = rng.uniform(-bound, bound, zc)
        for a in slopes:
            a[...] = self.prelu_init
        return theta

    def _expose(self, spec, theta):
        """Publish the flat vector as coefs_ / intercepts_ / prelu_alphas_ views."""
        coefs, intercepts, slopes = unpack(spec, theta)
        self._theta = theta
        self.coefs_ = coefs
        self.intercepts_ = intercepts
        if spec.activation == "prelu":
            self.prelu_alphas_ = slopes
        elif hasattr(self, "prelu_alphas_"):
            del self.prelu_alphas_

    def _current_theta(self):
        """The parameters predict should use: the flat vector, or a fresh pack of
        whatever arrays the user assigned to coefs_ / intercepts_ / prelu_alphas_."""
        spec = self._spec
        theta = getattr(self, "_theta", None)
        slopes = getattr(self, "prelu_alphas_", None)
        if theta is not None and is_packed_view(spec, theta, self.coefs_, self.intercepts_, slopes):
            return theta
        shapes = spec.coef_shapes()
        if len(self.coefs_) != len(shapes) or len(self.intercepts_) != len(shapes):
            raise ValueError(
                f"coefs_ and intercepts_ must hold {len(shapes)} arrays each for this network."
            )
        for l, (fi, zc) in enumerate(shapes):
            if np.shape(self.coefs_[l]) != (fi, zc) or np.shape(self.intercepts_[l]) != (zc,):
                raise ValueError(
                    f"coefs_[{l}] must have shape {(fi, zc)} and intercepts_[{l}] shape {(zc,)}; "
                    f"got {np.shape(self.coefs_[l])} and {np.shape(self.intercepts_[l])}."
                )
        full_slopes = None
        if spec.activation == "prelu":
            full_slopes = list(slopes) + [None]
        return pack(spec, self.coefs_, self.intercepts_, full_slopes)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_theta", None)  # coefs_ etc. carry the same numbers
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if hasattr(self, "_spec") and hasattr(self, "coefs_"):
            spec = self._spec
            slopes = getattr(self, "prelu_alphas_", None)
            theta = pack(spec, self.coefs_, self.intercepts_,
                         None if slopes is None else list(slopes) + [None])
            self._expose(spec, theta)

    # ------------------------------------------------------------------ fitting
    def _make_spec(self, n_features, n_outputs, out_activation):
        return make_layout(
            n_features, self._hidden_sizes(), n_outputs, self._activation_name,
            self._activation_param(), self.maxout_pieces, OUTPUTS[out_activation],
            _DTYPES[self.dtype],
        )

    def _new_optimizer(self, theta):
        return OptimizerState.new(
            SOLVERS[self.solver], theta, learning_rate=self.learning_rate_init,
            momentum=self.momentum, nesterov=self.nesterovs_momentum, beta_1=self.beta_1,
            beta_2=self.beta_2, epsilon=self.epsilon)

    @with_callbacks
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data X and target(s) y.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Training data (sparse input is densified).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets: class labels (classifier) or values (regressor).
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights; the loss is the weighted mean.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        self._validate_params()
        backend = get_backend(self.backend)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True.")
        X, targets, out_activation = self._prepare_targets(X, y, first_pass, incremental, classes)
        dtype = _DTYPES[self.dtype] if first_pass else self._spec.dtype
        X = self._dense(X, dtype)
        n_samples = X.shape[0]
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        sample_weight = self._combine_weights(sample_weight, y)
        if sample_weight is not None and not np.any(sample_weight > 0):
            raise ValueError("sample_weight must have at least one positive entry.")
        n_outputs = targets["n_outputs"]
        rng = check_random_state(self.random_state)

        if first_pass:
            spec = self._make_spec(X.shape[1], n_outputs, out_activation)
            theta = self._init_theta(spec, rng)
            loss_curve, t = [], 0
            best_loss = None if self.early_stopping else np.inf
            validation_scores = [] if self.early_stopping else None
            validation_losses = [] if self.early_stopping else None
            best_validation_score = -np.inf if self.early_stopping else None
            no_improvement = 0
        else:
            spec = self._spec
            if spec.n_outputs != n_outputs or spec.n_features != X.shape[1]:
                raise ValueError(
                    f"The fitted network has {spec.n_features} inputs and {spec.n_outputs} outputs; "
                    f"this data needs {X.shape[1]} and {n_outputs}. Fit without warm_start."
                )
            if list(spec.hidden) != self._hidden_sizes() or spec.activation != self._activation_name:
                raise ValueError(
                    "hidden_layer_sizes or activation changed since the last fit; "
                    "set warm_start=False (or start a new estimator) to train a new network."
                )
            theta = self._current_theta().astype(spec.dtype, copy=True)
            loss_curve = list(self.loss_curve_)
            t = self.t_
            best_loss = self.best_loss_
            validation_scores = None if self.validation_scores_ is None else list(self.validation_scores_)
            validation_losses = (None if getattr(self, "validation_loss_curve_", None) is None
                                 else list(self.validation_loss_curve_))
            best_validation_score = self.best_validation_score_
            no_improvement = self._no_improvement_count
        if validation_scores is None and self.early_stopping:
            validation_scores, validation_losses, best_validation_score = [], [], -np.inf
        if best_loss is None and not self.early_stopping:
            best_loss = np.inf

        opt = getattr(self, "_opt_state", None) if incremental else None
        if opt is None or opt.state1.shape != theta.shape or opt.solver != SOLVERS[self.solver]:
            opt = self._new_optimizer(theta)

        # ---- train / validation split (scikit-learn's call, stratified for classifiers)
        X_all = X
        Xv = yv_raw = swv = None
        train_idx = np.arange(n_samples)
        if self.early_stopping:
            stratify = targets["stratify"]
            idx = np.arange(n_samples)
            try:
                train_idx, val_idx = train_test_split(
                    idx, random_state=rng, test_size=self.validation_fraction, stratify=stratify)
            except ValueError:
                # too few members of some class to stratify: fall back to a plain split
                train_idx, val_idx = train_test_split(
                    idx, random_state=rng, test_size=self.validation_fraction)
            if val_idx.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset.")
            Xv = X[val_idx]
            yv_raw = targets["raw"][val_idx]
            swv = None if sample_weight is None else sample_weight[val_idx]
            X = np.ascontiguousarray(X[train_idx])
        n_train = X.shape[0]
        Y = targets["Y"][train_idx] if targets["Y"].shape[0] else targets["Y"]
        yl = targets["y"][train_idx] if targets["y"].shape[0] else targets["y"]
        sw = (np.zeros(0, dtype=dtype) if sample_weight is None
              else np.ascontiguousarray(sample_weight[train_idx], dtype=dtype))
        Y = np.ascontiguousarray(Y, dtype=dtype)
        yl = np.ascontiguousarray(yl, dtype=np.int64)

        if self.batch_size == "auto":
            batch_size = min(200, n_train)
        else:
            if self.batch_size > n_train:
                warnings.warn(
                    f"batch_size={self.batch_size} is larger than the {n_train} training "
                    "samples; it is clipped to the sample count.")
            batch_size = int(np.clip(self.batch_size, 1, n_train))

        trainer = backend.Trainer(spec, X, Y, yl, sw, batch_size, theta, opt, self.alpha)
        callbacks = EpochCallbacks(
            self, X_all, targets["raw"], 1 if incremental else self.max_iter,
            None if sample_weight is None else {"sample_weight": sample_weight})

        def fitted_now():
            return self._fitted_state(spec, trainer.snapshot(), n_outputs, out_activation)

        best_theta = None
        order = np.arange(n_train)
        hyper = opt.hyper
        max_epochs = 1 if incremental else self.max_iter
        # as in scikit-learn, n_iter_ counts the epochs of this call (t_ keeps counting)
        n_iter = 0
        for _ in range(max_epochs):
            callbacks.epoch_begin()
            tic = time.perf_counter()
            if self.shuffle:
                order = _fastpath.shuffled(order, rng)  # = sklearn.utils.shuffle, 3x faster
            total = trainer.epoch(np.ascontiguousarray(order, dtype=np.int64))
            if not np.isfinite(total):
                raise ValueError(
                    f"Training diverged in epoch {n_iter + 1}: the loss became "
                    f"{total}. Lower learning_rate_init (now {self.learning_rate_init}) or "
                    "standardise the inputs; the weights from before this call were kept.")
            n_iter += 1
            loss = total / n_train
            t += n_train
            loss_curve.append(loss)
            msg = None
            if self.early_stopping:
                current = trainer.snapshot()
                val_score, val_loss = self._validation_metrics(spec, current, Xv, yv_raw, swv)
                validation_scores.append(val_score)
                validation_losses.append(val_loss)
                if val_score < best_validation_score + self.tol:
                    no_improvement += 1
                else:
                    no_improvement = 0
                if val_score > best_validation_score:
                    best_validation_score = val_score
                    best_theta = current.copy()
            else:
                if loss > best_loss - self.tol:
                    no_improvement += 1
                else:
                    no_improvement = 0
                if loss < best_loss:
                    best_loss = loss
            if self.verbose:
                dt = time.perf_counter() - tic
                line = (f"Iteration {n_iter}, loss = {loss:.8f}, time = {dt:.3f}s, "
                        f"{n_train / max(dt, 1e-12):.0f} samples/s")
                if self.early_stopping:
                    line += (f", validation score = {validation_scores[-1]:.6f}, "
                             f"validation loss = {validation_losses[-1]:.8f}")
                print(line)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                hyper[LR] = self.learning_rate_init / (t + 1) ** self.power_t
            stop = False
            if no_improvement > self.n_iter_no_change:
                if self.early_stopping:
                    msg = (f"Validation score did not improve more than tol={self.tol} "
                           f"for {self.n_iter_no_change} consecutive epochs.")
                else:
                    msg = (f"Training loss did not improve more than tol={self.tol} "
                           f"for {self.n_iter_no_change} consecutive epochs.")
                if self.solver == "sgd" and self.learning_rate == "adaptive" and hyper[LR] > 1e-6:
                    hyper[LR] /= 5.0
                    no_improvement = 0
                    if self.verbose:
                        print(msg + f" Setting learning rate to {hyper[LR]:f}")
                else:
                    if self.verbose:
                        print(msg + " Stopping.")
                    stop = True
            if callbacks.epoch_end(fitted_now):
                if self.verbose:
                    print("A callback asked to stop.")
                stop = True
            if stop:
                break
            if not incremental and n_iter == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                    "the optimization hasn't converged yet.", ConvergenceWarning)

        theta = trainer.finish()
        if self.early_stopping and best_theta is not None:
            theta = best_theta
        if not np.all(np.isfinite(theta)):
            raise ValueError(
                "Solver produced non-finite parameter weights. Lower learning_rate_init or "
                "standardise the inputs.")
        # ---- publish (only now, so a failed fit leaves the previous state intact)
        self._spec = spec
        self._expose(spec, theta)
        self._opt_state = opt
        self.n_layers_ = spec.n_layers + 1
        self.n_outputs_ = n_outputs
        self.out_activation_ = out_activation
        self.loss_curve_ = loss_curve
        self.loss_ = loss_curve[-1]
        self.n_iter_ = n_iter
        self.t_ = t
        self.best_loss_ = best_loss
        self.validation_scores_ = validation_scores
        self.validation_loss_curve_ = validation_losses
        self.best_validation_score_ = best_validation_score
        self._no_improvement_count = no_improvement
        callbacks.fit_end(dict)
        return self

    def _fitted_state(self, spec, theta, n_outputs, out_activation):
        """Attributes that make a copy of this estimator predict with ``theta``
        (what scikit-learn's callbacks call reconstruction attributes)."""
        coefs, intercepts, slopes = unpack(spec, theta)
        state = {"_spec": spec, "_theta": theta, "coefs_": coefs, "intercepts_": intercepts,
                 "n_outputs_": n_outputs, "out_activation_": out_activation,
                 "n_layers_": spec.n_layers + 1}
        if spec.activation == "prelu":
            state["prelu_alphas_"] = slopes
        return state

    def _validation_metrics(self, spec, theta, Xv, yv, swv):
        """Score (accuracy or R^2) and loss of the validation set under ``theta``."""
        backend = get_backend(self.backend)
        P = backend.predict(spec, theta, Xv, True)
        return self._score_and_loss(P, yv, swv)

    def _combine_weights(self, sample_weight, y):
        return sample_weight

    def _predict_raw(self, X, apply_out):
        fast = _fastpath.predict_raw(self, X, apply_out)  # a few finite rows of an ndarray
        if fast is not None:
            return fast
        check_is_fitted(self, "coefs_")
        X = self._validate_X(X, reset=False)
        X = self._dense(X, self._spec.dtype)
        backend = get_backend(self.backend)
        return backend.predict(self._spec, self._current_theta(), X, apply_out)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier with Numba kernels on the CPU and GPU.

    A drop-in for :class:`sklearn.neural_network.MLPClassifier` (same
    parameters, defaults and fitted attributes, except ``max_fun`` and the
    ``lbfgs`` solver) that adds activations (leaky_relu, prelu, elu, maxout),
    a GPU backend, ``class_weight`` and the validation loss curve.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer.
    activation : {"identity", "logistic", "sigmoid", "tanh", "relu", "leaky_relu", \
"prelu", "elu", "maxout"}, default="relu"
        Hidden-layer activation; "sigmoid" is another name for "logistic".
    solver : {"adam", "sgd"}, default="adam"
        Stochastic optimizer.
    alpha : float, default=1e-4
        Strength of the L2 penalty on the weights (not the biases).
    batch_size : int or "auto", default="auto"
        Minibatch size; "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Learning-rate schedule (solver="sgd" only).
    learning_rate_init : float, default=1e-3
        Initial step size.
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule.
    max_iter : int, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState or None, default=None
        Seeds initial weights, shuffling and the validation split.
    tol : float, default=1e-4
        Improvement below which an epoch counts as "no improvement".
    verbose : bool or int, default=False
        Print one line per epoch: loss, time, samples per second (and the
        validation score and loss with early stopping).
    warm_start : bool, default=False
        Continue from the previous fit's weights.
    momentum : float, default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum (SGD).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (stratified) and stop when its
        accuracy stops improving; the best weights are restored.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping.
    backend : {"auto", "cpu", "cuda"}, default="auto"
        Where the math runs; "auto" uses a GPU when one is usable.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the computation.
    negative_slope : float, default=0.01
        Slope of leaky_relu for z < 0 (>= 0).
    prelu_init : float, default=0.25
        Initial value of every prelu slope.
    elu_alpha : float, default=1.0
        Scale of elu for z < 0 (> 0).
    maxout_pieces : int, default=2
        Affine pieces per maxout unit (>= 2).
    class_weight : dict, "balanced" or None, default=None
        Weights per class, multiplied into ``sample_weight``.

    Attributes
    ----------
    classes_ : ndarray
        Class labels.
    coefs_, intercepts_ : list of ndarray
        Weights (fan_in, fan_out) and biases per layer; for maxout, fan_out is
        units x pieces with piece p of unit j in column j * pieces + p.
    prelu_alphas_ : list of ndarray
        Learned prelu slopes per hidden layer (prelu only).
    loss_, loss_curve_, best_loss_, validation_scores_, best_validation_score_ :
        As in scikit-learn.
    validation_loss_curve_ : list of float or None
        Validation loss per epoch when early_stopping.
    n_iter_, t_, n_layers_, n_outputs_, out_activation_, n_features_in_, \
feature_names_in_ :
        As in scikit-learn.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastmlp import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0,
    ...                     backend="cpu").fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> float(clf.predict_proba(X[:1]).sum().round(6))
    1.0
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        backend="auto",
        dtype="float32",
        negative_slope=0.01,
        prelu_init=0.25,
        elu_alpha=1.0,
        maxout_pieces=2,
        class_weight=None,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            backend=backend, dtype=dtype, negative_slope=negative_slope, prelu_init=prelu_init,
            elu_alpha=elu_alpha, maxout_pieces=maxout_pieces,
        )
        self.class_weight = class_weight

    def _prepare_targets(self, X, y, first_pass, incremental, classes):
        X, y = self._validate_Xy(X, y, reset=first_pass)
        if incremental and not hasattr(self, "classes_") and classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit "
                "(all the labels that will ever appear).")
        y_type = type_of_target(y)
        if y_type not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(
                f"Unknown label type: {y_type!r}. MLPClassifier needs class labels "
                "(binary, multiclass or a multilabel indicator matrix); use MLPRegressor "
                "for continuous targets.")
        if first_pass or not hasattr(self, "_label_binarizer"):
            lb = LabelBinarizer()
            if incremental and classes is not None and not y_type.startswith("multilabel"):
                lb.fit(np.asarray(classes))
                missing = np.setdiff1d(unique_labels(y), lb.classes_)
                if len(missing):
                    raise ValueError(f"y has labels {missing} not in classes={list(lb.classes_)}.")
            else:
                lb.fit(y)
            self._label_binarizer = lb
            self.classes_ = lb.classes_
        else:
            if incremental and classes is not None and not np.array_equal(
                    np.asarray(classes), self.classes_) and not np.array_equal(
                    np.sort(np.asarray(classes)), self.classes_):
                raise ValueError(
                    f"classes={list(classes)} is not the same as on the first call "
                    f"({list(self.classes_)}).")
            labels = unique_labels(y)
            if self.warm_start and not incremental:
                if set(labels) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {labels}.")
            elif len(np.setdiff1d(labels, self.classes_)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {labels}.")
        lb = self._label_binarizer
        if len(self.classes_) < 2 and lb.y_type_ != "multilabel-indicator":
            raise ValueError(
                f"The training data has only one class ({self.classes_[0]!r}); "
                "a classifier needs at least two classes.")
        B = lb.transform(y)
        n = B.shape[0]
        if lb.y_type_ == "multiclass":
            out = "softmax"
            targets = {"Y": np.zeros((0, 1)), "y": B.argmax(axis=1), "n_outputs": B.shape[1]}
        else:
            out = "logistic"
            targets = {"Y": B.astype(np.float64), "y": np.zeros(0, dtype=np.int64),
                       "n_outputs": B.shape[1]}
        targets["raw"] = y
        targets["stratify"] = None if lb.y_type_ == "multilabel-indicator" else y
        assert n == X.shape[0]
        return X, targets, out

    def _combine_weights(self, sample_weight, y):
        if self.class_weight is None:
            return sample_weight
        if isinstance(self.class_weight, str) and self.class_weight != "balanced":
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}.")
        if not isinstance(self.class_weight, (str, dict)):
            raise TypeError(
                f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}.")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError("class_weight is not supported for multilabel targets.")
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight has labels {sorted(unknown, key=str)} "
                                 f"that are not classes ({list(self.classes_)}).")
            cw = np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_])
            if np.any(cw < 0) or not np.all(np.isfinite(cw)):
                raise ValueError("class_weight values must be finite and >= 0.")
            w = cw[np.searchsorted(self.classes_, y)]
        else:
            w = compute_sample_weight("balanced", y)
        return w if sample_weight is None else w * sample_weight

    def _score_and_loss(self, P, y, sw):
        """Accuracy and mean log loss of predictions P against raw labels y."""
        P = P.astype(np.float64)
        B = self._label_binarizer.transform(y).astype(np.float64)
        eps = np.finfo(np.float64).eps
        Pc = np.clip(P, eps, 1 - eps)
        if B.shape[1] == P.shape[1] and self._label_binarizer.y_type_ == "multiclass":
            per_row = -(B * np.log(Pc)).sum(axis=1)
            pred = self.classes_[P.argmax(axis=1)]
        else:
            per_row = -(B * np.log(Pc) + (1 - B) * np.log(1 - Pc)).sum(axis=1)
            pred = self._label_binarizer.inverse_transform(P)
        loss = float(np.average(per_row, weights=sw))
        return float(accuracy_score(y, pred, sample_weight=sw)), loss

    @with_callbacks
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with one epoch over the given batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            Every class that will ever appear; required on the first call.

        Returns
        -------
        self : object
        """
        if self.solver not in SOLVERS:
            _check_choice("solver", self.solver, list(SOLVERS))
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X):
        """Predict class labels for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes) for multilabel
        """
        O = self._predict_raw(X, apply_out=False)
        if self.out_activation_ == "softmax":
            return self.classes_[O.argmax(axis=1)]
        # logistic outputs: sigmoid(o) > 0.5  <=>  o > 0
        B = (O > 0).astype(int)
        if self.n_outputs_ == 1:
            return self._label_binarizer.inverse_transform(B.ravel())
        return self._label_binarizer.inverse_transform(B)

    def predict_proba(self, X):
        """Class probabilities for X, columns ordered as ``classes_``; rows sum to 1.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        P = self._predict_raw(X, apply_out=True)
        if self.n_outputs_ == 1:
            p = P.ravel()
            return np.column_stack([1 - p, p])
        return P

    def predict_log_proba(self, X):
        """Log of ``predict_proba(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        P = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(P, out=P)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor with Numba kernels on the CPU and GPU.

    A drop-in for :class:`sklearn.neural_network.MLPRegressor`; the parameters
    are :class:`MLPClassifier`'s (without ``class_weight``) plus ``loss``.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        Half squared error with an identity output, or half Poisson deviance
        with an exp output (targets must be >= 0).
    hidden_layer_sizes, activation, solver, ... :
        As in :class:`MLPClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import MLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5])
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=500, random_state=0,
    ...                    backend="cpu").fit(X, y)
    >>> bool(reg.score(X, y) > 0.95)
    True
    """

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        backend="auto",
        dtype="float32",
        negative_slope=0.01,
        prelu_init=0.25,
        elu_alpha=1.0,
        maxout_pieces=2,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            backend=backend, dtype=dtype, negative_slope=negative_slope, prelu_init=prelu_init,
            elu_alpha=elu_alpha, maxout_pieces=maxout_pieces,
        )
        self.loss = loss

    def _validate_params(self):
        super()._validate_params()
        _check_choice("loss", self.loss, ["squared_error", "poisson"])

    def _prepare_targets(self, X, y, first_pass, incremental, classes):
        X, y = self._validate_Xy(X, y, reset=first_pass)
        y = np.asarray(y, dtype=np.float64)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError('loss="poisson" requires y >= 0.')
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        out = "exp" if self.loss == "poisson" else "identity"
        targets = {"Y": Y, "y": np.zeros(0, dtype=np.int64), "n_outputs": Y.shape[1],
                   "raw": y, "stratify": None}
        return X, targets, out

    def _score_and_loss(self, P, y, sw):
        """R^2 and loss (half squared error, or half Poisson deviance) on a validation set."""
        P = P.astype(np.float64)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if self.loss == "poisson":
            logP = np.log(np.maximum(P, np.finfo(np.float64).tiny))
            ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
            per_row = (ylogy - Y * logP - Y + P).sum(axis=1)
        else:
            per_row = 0.5 * ((P - Y) ** 2).sum(axis=1)
        pred = P.ravel() if P.shape[1] == 1 else P
        return float(r2_score(y, pred, sample_weight=sw)), float(np.average(per_row, weights=sw))

    @with_callbacks
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with one epoch over the given batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predict target values for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        P = self._predict_raw(X, apply_out=True)
        return P.ravel() if P.shape[1] == 1 else P


MLP = MLPClassifier
