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

import functools
import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call, type_of_target, unique_labels,
)
from sklearn.utils.validation import (
    _check_sample_weight, check_is_fitted, column_or_1d, validate_data,
)

from . import _config, _fastpath
from ._callbacks import CallbackSupportMixin, EpochCallbacks, with_callbacks
from ._registry import ACTIVATIONS, ALL_SOLVERS, OUTPUTS, SOLVERS, resolve_activation
from ._solvers import (History, LocalEngine, densify, fit_lbfgs, fit_stochastic,
                       validation_split)
from .backends import BACKENDS, get_backend
from .backends.layout import (
    Dropout, OptimizerState, is_packed_view, make_layout, pack, unpack,
)

_DTYPES = {"float32": np.float32, "float64": np.float64}

# attributes scikit-learn's callback machinery keeps on the estimator during a
# fit: they belong to the running call, not to the fitted state
_CALLBACK_KEYS = ("_callback_fit_ctx", "_skl_callbacks_to_teardown")

_F32_RANGE = ("X has values beyond the range of float32 (|x| > 3.4e38), the precision of this "
              "model (dtype='float32'). Scale the inputs (e.g. with StandardScaler) or use "
              "dtype='float64'.")


def _cast(convert, dtype):
    """``convert()``, a cast of X's values to the model's dtype, with a value that a
    float32 model cannot hold raising a ValueError instead of turning into inf (and
    then into NaN predictions or a "diverged" fit).

    The cast reports it itself (NumPy >= 1.24 checks the floating-point flags of
    casts), for dense and sparse X alike: no second pass over the data.
    """
    if np.dtype(dtype) != np.float32:
        with np.errstate(over="ignore"):
            return convert()
    try:
        with np.errstate(over="raise"):
            return convert()
    except FloatingPointError:
        raise ValueError(_F32_RANGE) from None


def _to_model_dtype(X, dtype):
    """X (dense or sparse rows) as a C-contiguous array of the model's dtype (see ``_cast``)."""
    if sp.issparse(X):
        return _cast(lambda: X.astype(dtype), dtype).toarray()
    if X.dtype == dtype:
        return np.ascontiguousarray(X)
    return _cast(lambda: np.ascontiguousarray(X, dtype=dtype), dtype)


def _check_sparse_structure(X):
    """Raise a ValueError unless the index arrays of a sparse X describe its shape.

    scipy checks a matrix's index arrays only when it is built (and not their values
    at all for CSR/CSC/BSR), so a matrix whose ``indices``, ``indptr``, ``row`` or
    ``col`` were changed later reaches scipy's conversions and fastmlp's kernels with
    indices outside its shape: memory corruption, not an error.  This check reads the
    index arrays once (O(nnz), vectorised, nothing is modified) before any conversion.
    """
    if not sp.issparse(X) or len(X.shape) != 2:
        return  # (other formats are Python structures; other ndims: validate_data refuses)
    fmt = X.format
    n, d = X.shape
    if fmt in ("csr", "csc", "bsr"):
        major, minor = (n, d) if fmt != "csc" else (d, n)
        if fmt == "bsr":
            r, c = X.blocksize
            major, minor = major // r, minor // c
        indptr, indices = np.asarray(X.indptr), np.asarray(X.indices)
        ok = (indptr.ndim == 1 and indices.ndim == 1 and indptr.shape[0] == major + 1
              and indptr.dtype.kind in "iu" and indices.dtype.kind in "iu")
        if ok:
            nnz = int(indptr[-1])
            ok = (indptr[0] == 0 and nnz <= min(indices.shape[0], np.shape(X.data)[0])
                  and bool(np.all(indptr[1:] >= indptr[:-1])))
            if ok and nnz:
                ok = indices[:nnz].min() >= 0 and indices[:nnz].max() < minor
    elif fmt == "coo":
        row, col = np.asarray(X.row), np.asarray(X.col)
        m = np.shape(X.data)[0]
        ok = (row.shape == (m,) and col.shape == (m,) and row.dtype.kind in "iu"
              and col.dtype.kind in "iu")
        if ok and m:
            ok = row.min() >= 0 and row.max() < n and col.min() >= 0 and col.max() < d
    else:
        return
    if not ok:
        raise ValueError(
            f"X is a malformed sparse {fmt} matrix: its index arrays do not describe a "
            f"{n} x {d} matrix (indices outside the shape, or an indptr that is not "
            "non-decreasing from 0). Build it again from (data, indices, indptr) with "
            "scipy, which checks them.")


def _to_csr(X, dtype):
    """A sparse X (CSR, CSC or COO, matrix or array) as the CSR matrix of the model's
    dtype that the kernels take: duplicate entries summed (and indices sorted), on a
    copy; the user's matrix is never modified.  X itself where it already is all that.
    """
    X = X.tocsr()  # (CSR: X itself; CSC and COO: a new matrix, duplicates summed)
    X = _cast(lambda: X.astype(dtype, copy=False), dtype)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def _predict_chunks(backend, spec, theta, X, apply_out):
    """Forward pass over X, converting (and densifying) one chunk of rows at a time.

    Memory beyond the output is one chunk in the model's dtype plus the
    backend's workspace, whatever X's dtype, format and size.  A sparse X
    is converted to the model's dtype once (its non-zeros only); a backend
    that takes CSR multiplies its rows directly, chunk by chunk, unless X is
    dense enough to be densified (``_solvers.densify``); then each chunk of
    rows is densified straight into that dtype.
    """
    dtype = spec.dtype
    if sp.issparse(X):
        X = _to_csr(X, dtype)
        if not densify(backend, X):
            return backend.predict(spec, theta, X, apply_out)
    elif X.dtype == dtype and X.flags.c_contiguous:
        return backend.predict(spec, theta, X, apply_out)
    n = X.shape[0]
    step = max(1, int(_config.PREDICT_CHUNK_ROWS))
    if n <= step:
        return backend.predict(spec, theta, _to_model_dtype(X, dtype), apply_out)
    out = np.empty((n, spec.n_outputs), dtype=dtype)
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[start:stop] = backend.predict(spec, theta, _to_model_dtype(X[start:stop], dtype),
                                          apply_out)
    return out


class _TrainData:
    """One fit's training arrays, in the layouts the kernels take.

    X (n, d) C-contiguous in the model's dtype (or a CSR matrix of that dtype,
    duplicates summed: see ``_to_csr`` and ``_solvers.densify``); Y (n, k) float targets (or
    (0, k) for softmax); y (n,) int64 labels (or (0,)); sw (n,) weights in the
    model's dtype (or (0,)); sample_weight the float64 weights or None; raw
    the targets as given (for scores); raw_all the targets of the whole fit
    (before an early-stopping split).
    """

    def __init__(self, X, Y, y, sw, sample_weight, raw, n_outputs, out_activation, classifier):
        self.X, self.Y, self.y, self.sw = X, Y, y, sw
        self.sample_weight, self.raw, self.raw_all = sample_weight, raw, raw
        self.n_outputs, self.out_activation, self.classifier = n_outputs, out_activation, classifier

    @property
    def n(self):
        return self.X.shape[0]

    def subset(self, idx):
        """The rows idx (the training part of an early-stopping split)."""
        def rows(a):
            return np.ascontiguousarray(a[idx]) if a.shape[0] else a
        X = self.X[idx] if sp.issparse(self.X) else np.ascontiguousarray(self.X[idx])
        part = _TrainData(X, rows(self.Y), rows(self.y),
                          rows(self.sw),
                          None if self.sample_weight is None else self.sample_weight[idx],
                          self.raw[idx], self.n_outputs, self.out_activation, self.classifier)
        part.raw_all = self.raw_all
        return part


_MAX_WIDTH = 2 ** 31 - 1  # the widest layer the kernels' int64 offsets always hold


def _check_number(name, value, *, integer=False, low=None, high=None,
                  low_open=False, high_open=False):
    """Raise a TypeError/ValueError naming ``name`` unless value is a number in range."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__}).")
    if not isinstance(value, numbers.Integral) and not np.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}.")  # (an int of any size is)
    if low is not None and (value < low or (low_open and value == low)):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {value!r}.")
    if high is not None and (value > high or (high_open and value == high)):
        op = "<" if high_open else "<="
        raise ValueError(f"{name} must be {op} {high}, got {value!r}.")


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")


def _dtype_of(value):
    """The model's NumPy dtype for the ``dtype`` parameter: "float32" or "float64", or
    what NumPy reads as one of them (np.float32, np.dtype("float64"), "f4", ...)."""
    if isinstance(value, str) and value in _DTYPES:
        return _DTYPES[value]
    try:
        dt = np.dtype(value) if value is not None else None
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt.name not in _DTYPES:
        raise ValueError(f"dtype must be one of {list(_DTYPES)} (or a NumPy dtype of "
                         f"either), got {value!r}.")
    return _DTYPES[dt.name]


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
        max_fun=15000,
        backend="auto",
        dtype="float32",
        negative_slope=0.01,
        prelu_init=0.25,
        elu_alpha=1.0,
        maxout_pieces=2,
        dropout=0.0,
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
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.negative_slope = negative_slope
        self.prelu_init = prelu_init
        self.elu_alpha = elu_alpha
        self.maxout_pieces = maxout_pieces
        self.dropout = dropout

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
        if any(s > _MAX_WIDTH for s in h):  # (the layout's offsets are int64)
            raise ValueError(f"hidden_layer_sizes must be <= {_MAX_WIDTH} (2**31 - 1), got {h}.")
        return [int(s) for s in h]

    def _validate_params(self):
        """Check every constructor parameter; raise errors that name the parameter."""
        self._hidden_sizes()
        self._activation_name = resolve_activation(self.activation)
        _check_choice("solver", self.solver, list(ALL_SOLVERS))
        _check_choice("learning_rate", self.learning_rate, ["constant", "invscaling", "adaptive"])
        _check_choice("backend", self.backend, list(BACKENDS))
        _dtype_of(self.dtype)
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
        if not (isinstance(self.n_iter_no_change, numbers.Real)
                and not isinstance(self.n_iter_no_change, bool)
                and self.n_iter_no_change == np.inf):  # np.inf: never stop on tol
            _check_number("n_iter_no_change", self.n_iter_no_change, integer=True, low=1)
        _check_number("max_fun", self.max_fun, integer=True, low=1)
        _check_number("negative_slope", self.negative_slope, low=0.0)
        _check_number("prelu_init", self.prelu_init)
        _check_number("elu_alpha", self.elu_alpha, low=0.0, low_open=True)
        _check_number("maxout_pieces", self.maxout_pieces, integer=True, low=2, high=2 ** 16)
        for flag in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}.")
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"verbose must be a bool or an int, got {self.verbose!r}.")
        rates = self._dropout_rates()
        if self.solver == "lbfgs" and any(r > 0 for r in rates):
            raise ValueError(
                f"dropout={self.dropout!r} needs solver='sgd' or 'adam': lbfgs needs a "
                "deterministic objective (its line search compares losses of one function), "
                "and dropout draws new masks for every evaluation. Set dropout=0.0 or use a "
                "stochastic solver.")

    def _dropout_rates(self):
        """The dropout rate of each hidden layer (a list of floats), or a TypeError /
        ValueError naming the parameter."""
        n_hidden = len(self._hidden_sizes())
        d = self.dropout
        if isinstance(d, (list, tuple)):
            if len(d) != n_hidden:
                raise ValueError(
                    f"dropout has {len(d)} rates but the network has {n_hidden} hidden "
                    f"layer(s) (hidden_layer_sizes={self.hidden_layer_sizes!r}): give one "
                    "rate per hidden layer, or one float for all of them.")
            rates, names = list(d), [f"dropout[{i}]" for i in range(len(d))]
        elif isinstance(d, numbers.Real) and not isinstance(d, bool):
            rates, names = [d] * n_hidden, ["dropout"] * n_hidden
            if not n_hidden:
                _check_number("dropout", d, low=0.0, high=1.0, high_open=True)
        else:
            raise TypeError("dropout must be a float in [0, 1) or a tuple with one such rate "
                            f"per hidden layer, got {d!r} ({type(d).__name__}).")
        for name, r in zip(names, rates):
            _check_number(name, r, low=0.0, high=1.0, high_open=True)
        return [float(r) for r in rates]

    def _dropout_for_fit(self, rng, first_pass):
        """The ``Dropout`` of a stochastic fit (None when every rate is 0), on the draft.

        Its seed is drawn once per model, scikit-learn's way: one
        ``rng.randint(2**31 - 1)`` from the fit's RandomState, after the initial
        weights (only when a rate is > 0, so a fit without dropout draws exactly
        the numbers it always drew), and kept in ``_dropout_seed`` so that
        warm_start and partial_fit go on with new masks, not the first epoch's
        again (the masks are keyed by the epoch's number, counted over the
        whole loss curve).
        """
        rates = self._dropout_rates()
        if not any(r > 0 for r in rates):
            return None
        seed = None if first_pass else getattr(self, "_dropout_seed", None)
        if seed is None:
            seed = int(rng.randint(np.iinfo(np.int32).max))
        self._dropout_seed = seed
        return Dropout(tuple(rates), seed)

    def _activation_param(self):
        name = self._activation_name
        if name == "leaky_relu":
            return float(self.negative_slope)
        if name == "elu":
            return float(self.elu_alpha)
        return 0.0

    # ------------------------------------------------------------------ data
    def _validate_Xy(self, X, y, reset):
        _check_sparse_structure(X)
        X, y = validate_data(
            self, X, y, reset=reset, accept_sparse=["csr", "csc", "coo"],
            multi_output=True, dtype=(np.float64, np.float32), y_numeric=not is_classifier(self),
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # DataConversionWarning, as scikit-learn
        return X, y

    def _prepare_data(self, X, y, sample_weight, first_pass, incremental, classes):
        """Validate X, y and the weights (on the draft) and build the kernels' arrays."""
        X, targets, out_activation = self._prepare_targets(X, y, first_pass, incremental, classes)
        dtype = _dtype_of(self.dtype)
        if sp.issparse(X):  # kept sparse: CSR, multiplied as it is (see _solvers.densify)
            X = _to_csr(X, dtype)
        else:
            X = _to_model_dtype(X, dtype)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        sample_weight = self._combine_weights(sample_weight, targets["raw"])
        if sample_weight is not None and not np.any(sample_weight > 0):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        sw = (np.zeros(0, dtype=dtype) if sample_weight is None
              else np.ascontiguousarray(sample_weight, dtype=dtype))
        return _TrainData(
            X, np.ascontiguousarray(targets["Y"], dtype=dtype),
            np.ascontiguousarray(targets["y"], dtype=np.int64), sw, sample_weight,
            targets["raw"], targets["n_outputs"], out_activation, is_classifier(self))

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
        """What a file (pickle, joblib, skops, deepcopy) stores: the model's definition in
        plain values and arrays, never its derived state (see ``fastmlp._persist``)."""
        # a copy: on Python >= 3.11 the base class hands back the instance's own dict,
        # and the live estimator must keep its flat vector (and its 1-row fast path)
        state = dict(super().__getstate__())
        for key in _CALLBACK_KEYS:
            state.pop(key, None)
        from . import _persist  # on first use: not part of an import and fit (start-up)

        return _persist.saved_state(state, self.__dict__)

    def __setstate__(self, state):
        """Load a stored state: rebuild the layout and flat vector with the code fit uses,
        after checking every stored attribute against them (ValueError naming the first
        inconsistent one)."""
        from . import _persist  # on first use: not part of an import and fit (start-up)

        super().__setstate__(_persist.loaded_state(state))
        _persist.restore(self, isinstance(self, ClassifierMixin))

    # ------------------------------------------------------------------ fitting
    def _make_spec(self, n_features, n_outputs, out_activation):
        return make_layout(
            n_features, self._hidden_sizes(), n_outputs, self._activation_name,
            self._activation_param(), self.maxout_pieces, OUTPUTS[out_activation],
            _dtype_of(self.dtype),
        )

    @property
    def _solver_code(self):
        return SOLVERS.get(self.solver)

    def _new_optimizer(self, theta):
        return OptimizerState.new(
            SOLVERS[self.solver], theta, learning_rate=self.learning_rate_init,
            momentum=self.momentum, nesterov=self.nesterovs_momentum, beta_1=self.beta_1,
            beta_2=self.beta_2, epsilon=self.epsilon)

    def _check_solver(self):
        """partial_fit exists for the stochastic solvers only (as in scikit-learn)."""
        if self.solver not in SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic optimizers. "
                f"{self.solver} is not stochastic.")
        return True

    @with_callbacks
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data X and target(s) y.

        A failed or interrupted fit (any exception, ``KeyboardInterrupt``
        included) leaves the estimator exactly as it was before the call.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Training data.  A sparse matrix stays sparse: the first layer
            multiplies its CSR rows directly (CPU and CUDA); a denser one
            (``_config.SPARSE_DENSIFY_ABOVE``) is densified a chunk of rows
            at a time, never whole.
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
        """Train a draft copy of the estimator; publish it in one assignment.

        Everything a fit computes (label encoding, width, weights, optimizer
        state, history) is set on the draft.  Only when the whole fit
        succeeded does ``_publish`` swap the draft's attributes in, so an
        exception or a KeyboardInterrupt leaves ``self`` untouched and a
        concurrent ``predict`` sees either the old model or the new one.
        """
        self._validate_params()
        backend = get_backend(self.backend)
        draft = self._draft()
        first_pass = not hasattr(draft, "coefs_") or (not self.warm_start and not incremental)
        data = draft._prepare_data(X, y, sample_weight, first_pass, incremental, classes)
        if self.early_stopping and incremental:  # after the data's checks and warnings, as
            raise ValueError("partial_fit does not support early_stopping=True.")  # sklearn
        rng = check_random_state(self.random_state)
        if first_pass:
            draft.__dict__.pop("_dropout_seed", None)  # a new model draws its own
            spec = draft._make_spec(data.X.shape[1], data.n_outputs, data.out_activation)
            theta = draft._init_theta(spec, rng)
        else:
            spec = draft._same_network(data)
            theta = draft._current_theta().astype(spec.dtype, copy=True)
        if self.solver == "lbfgs":
            draft._fit_lbfgs(backend, spec, theta, data, first_pass, owner=self)
        else:
            draft._fit_stochastic(backend, spec, theta, data, rng, first_pass, incremental,
                                  owner=self)
        self._publish(draft)
        return self

    def _fit_stochastic(self, backend, spec, theta, data, rng, first_pass, incremental, owner):
        """SGD / Adam on this draft: the early-stopping split, the local engine, the
        shared loop (``_solvers.fit_stochastic``), then its result published here."""
        opt = self._optimizer(theta, first_pass, incremental)
        dropout = self._dropout_for_fit(rng, first_pass)
        history = self._history(first_pass)
        X_all, sample_weight = data.X, data.sample_weight
        validation = None
        if self.early_stopping:
            stratify = None  # scikit-learn stratifies single-output classifiers
            if data.classifier and data.n_outputs == 1:
                stratify = self._label_binarizer.transform(data.raw).astype(bool)
            train_idx, val_idx = validation_split(data, self.validation_fraction, stratify, rng)
            Xv, yv = data.X[val_idx], data.raw[val_idx]
            swv = None if sample_weight is None else sample_weight[val_idx]
            data = data.subset(train_idx)
            validation = functools.partial(self._validation_metrics, spec, Xv=Xv, yv=yv, swv=swv)
        engine = LocalEngine(backend, spec, data, self.alpha, rng, self.shuffle, validation,
                             dropout)
        callbacks = self._epoch_callbacks(owner, X_all, data.raw_all,
                                          1 if incremental else self.max_iter, sample_weight)
        fit = fit_stochastic(self, engine, theta, opt, history, incremental=incremental,
                             callbacks=callbacks, reconstruct=self._reconstruct(spec, data))
        self._publish_stochastic(spec, fit, data)
        callbacks.fit_end(self._fitted_attributes)

    def _fit_lbfgs(self, backend, spec, theta, data, first_pass, owner):
        """L-BFGS-B on this draft: the local engine, the shared driver
        (``_solvers.fit_lbfgs``), then its result published here."""
        engine = LocalEngine(backend, spec, data, self.alpha)
        callbacks = self._epoch_callbacks(owner, data.X, data.raw_all, self.max_iter,
                                          data.sample_weight)
        fit = fit_lbfgs(self, engine, spec, theta, data.n_outputs, data.out_activation,
                        callbacks=callbacks, reconstruct=self._reconstruct(spec, data))
        self._publish_lbfgs(spec, fit, data, first_pass)
        callbacks.fit_end(self._fitted_attributes)

    @staticmethod
    def _epoch_callbacks(owner, X, y, max_epochs, sample_weight):
        return EpochCallbacks(owner, X, y, max_epochs,
                              None if sample_weight is None else {"sample_weight": sample_weight})

    def _reconstruct(self, spec, data):
        """theta -> the attributes of a copy predicting with theta (for the callbacks)."""
        n_outputs, out_activation = data.n_outputs, data.out_activation
        return lambda theta: self._fitted_state(spec, theta, n_outputs, out_activation)

    def _optimizer(self, theta, first_pass, incremental):
        """partial_fit goes on from the last call's optimizer state (a copy: published only
        if this call succeeds); any other fit starts a new one."""
        if incremental and not first_pass:
            prev = getattr(self, "_opt_state", None)
            if (prev is not None and prev.state1.shape == theta.shape
                    and prev.solver == self._solver_code):
                return prev.copy()
        return self._new_optimizer(theta)

    def _history(self, first_pass):
        """The record a stochastic fit continues (warm_start, partial_fit), or a new one."""
        if first_pass or not hasattr(self, "loss_curve_"):
            return History()
        return History(self.loss_curve_, self.t_, getattr(self, "_no_improvement_count", 0),
                       getattr(self, "best_loss_", None),
                       getattr(self, "best_validation_score_", None),
                       getattr(self, "validation_scores_", None),
                       getattr(self, "validation_loss_curve_", None))

    def _publish_stochastic(self, spec, fit, data):
        """Set the fitted attributes of a ``StochasticFit`` (on a draft)."""
        self._publish_weights(spec, fit.theta, data)
        self._opt_state = fit.opt
        h = fit.history
        self.loss_curve_ = h.loss_curve
        self.loss_ = h.loss_curve[-1]
        self.n_iter_ = fit.n_iter
        self.t_ = h.t
        self.best_loss_ = h.best_loss
        if self.early_stopping:
            self.validation_scores_ = h.validation_scores
            self.validation_loss_curve_ = h.validation_losses
            self.best_validation_score_ = h.best_score
        else:
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None
        self._no_improvement_count = h.no_improvement

    def _publish_lbfgs(self, spec, fit, data, first_pass):
        """Set the fitted attributes of an ``LbfgsFit`` (on a draft), as scikit-learn does:
        a first fit has no stochastic history."""
        self._publish_weights(spec, fit.theta, data)
        self.n_iter_ = fit.n_iter
        self.loss_ = fit.loss
        if first_pass:
            self.t_ = 0
            for name in ("loss_curve_", "best_loss_", "validation_scores_",
                         "validation_loss_curve_", "best_validation_score_",
                         "_no_improvement_count", "_opt_state"):
                self.__dict__.pop(name, None)
        else:
            self.t_ = getattr(self, "t_", 0)

    def _draft(self):
        """A copy sharing the current attributes; a fit sets new ones on it only."""
        draft = object.__new__(type(self))
        draft.__dict__.update(self.__dict__)
        for key in _CALLBACK_KEYS:
            draft.__dict__.pop(key, None)
        return draft

    def _publish(self, draft):
        """Make the draft's attributes this estimator's, in one assignment."""
        new = draft.__dict__
        for key in _CALLBACK_KEYS:  # the running call's callback bookkeeping stays
            if key in self.__dict__:
                new[key] = self.__dict__[key]
        self.__dict__ = new

    def _view(self, d=None):
        """An estimator object over the attribute dict d (default: the current one).

        A fit replaces the attribute dict instead of changing it (``_publish``),
        so reads through the view stay consistent for a whole predict call.
        """
        view = object.__new__(type(self))
        view.__dict__ = self.__dict__ if d is None else d
        return view

    def _same_network(self, data):
        """The fitted network's spec, or a ValueError naming what changed (warm start,
        partial_fit): a changed parameter must not be silently ignored."""
        spec = self._spec
        if spec.n_outputs != data.n_outputs or spec.n_features != data.X.shape[1]:
            raise ValueError(
                f"The fitted network has {spec.n_features} inputs and {spec.n_outputs} outputs; "
                f"this data needs {data.X.shape[1]} and {data.n_outputs}. Fit without warm_start.")
        want = self._make_spec(spec.n_features, spec.n_outputs, data.out_activation)
        changed = [name for name, old, new in (
            ("hidden_layer_sizes", spec.hidden, want.hidden),
            ("activation", spec.activation, want.activation),
            ("negative_slope" if spec.activation == "leaky_relu" else "elu_alpha",
             spec.param, want.param),
            ("maxout_pieces", spec.pieces, want.pieces),
            ("dtype", spec.dtype, want.dtype),
            ("output", spec.out_code, want.out_code)) if old != new]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} changed since the last fit; set warm_start=False "
                "(or start a new estimator) to train a new network.")
        return spec

    def _publish_weights(self, spec, theta, data):
        self._spec = spec
        self._expose(spec, theta)
        self.n_layers_ = spec.n_layers + 1
        self.n_outputs_ = data.n_outputs
        self.out_activation_ = data.out_activation

    def _fitted_state(self, spec, theta, n_outputs, out_activation):
        """Attributes that make a copy of this estimator predict with ``theta``
        (what scikit-learn's callbacks call reconstruction attributes)."""
        coefs, intercepts, slopes = unpack(spec, theta)
        # the fit's label encoding and width (set on the draft) come along
        state = {k: v for k, v in self.__dict__.items()
                 if k in ("classes_", "_label_binarizer", "n_features_in_", "feature_names_in_")}
        state.update({"_spec": spec, "_theta": theta, "coefs_": coefs, "intercepts_": intercepts,
                      "n_outputs_": n_outputs, "out_activation_": out_activation,
                      "n_layers_": spec.n_layers + 1})
        if spec.activation == "prelu":
            state["prelu_alphas_"] = slopes
        return state

    def _fitted_attributes(self):
        """Every attribute of this (draft) estimator: what makes a copy of the
        estimator the fitted model, before the draft is published."""
        return {k: v for k, v in self.__dict__.items() if k not in _CALLBACK_KEYS}

    def _validation_metrics(self, spec, theta, Xv, yv, swv):
        """Score (accuracy or R^2) and loss of the validation set under ``theta``."""
        backend = get_backend(self.backend)
        P = _predict_chunks(backend, spec, theta, Xv, True)
        if not _fastpath.all_finite(P):  # scikit-learn scores non-finite predictions as nan
            return np.nan, np.nan
        if swv is not None and np.all(swv == 0):  # scikit-learn's scorer refuses them
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return self._score_and_loss(P, yv, swv)

    def _combine_weights(self, sample_weight, y):
        return sample_weight

    def _predict_raw(self, X, apply_out):
        """(forward pass, the attribute dict it used): one consistent fitted state
        for the whole call, X converted chunk by chunk in the model's dtype."""
        d = self.__dict__  # a fit replaces the dict (``_publish``): this one stays whole
        fast = _fastpath.predict_raw(self, d, X, apply_out)
        if fast is not None:  # a few finite rows of an ndarray
            return fast, d
        return self._predict_full(d, X, apply_out), d

    def _predict_full(self, d, X, apply_out):
        """The forward pass after scikit-learn's validation, for the attribute dict d."""
        est = self._view(d)
        check_is_fitted(est, "coefs_")
        _check_sparse_structure(X)
        X = validate_data(est, X, reset=False, accept_sparse="csr", ensure_min_samples=1)
        spec = est._spec
        if X.shape[1] != spec.n_features:  # n_features_in_ assigned: never trusted by a kernel
            raise ValueError(
                f"X has {X.shape[1]} features, but the fitted network has {spec.n_features} "
                f"inputs (coefs_[0] has {spec.n_features} rows; n_features_in_ is "
                f"{d.get('n_features_in_')!r}).")
        backend = get_backend(est.backend)
        return _predict_chunks(backend, spec, est._current_theta(), X, apply_out)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier with Numba kernels on the CPU and GPU.

    A drop-in for :class:`sklearn.neural_network.MLPClassifier` (same
    parameters, defaults and fitted attributes, all three solvers) that adds
    activations (leaky_relu, prelu, elu, maxout), a GPU backend,
    ``class_weight`` and the validation loss curve.  A fit that fails or is
    interrupted leaves the estimator as it was before the call.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer.
    activation : {"identity", "logistic", "sigmoid", "tanh", "relu", "leaky_relu", \
"prelu", "elu", "maxout"}, default="relu"
        Hidden-layer activation; "sigmoid" is another name for "logistic".
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        "adam" or "sgd": minibatch training, one compiled call per epoch.
        "lbfgs": scipy's L-BFGS-B on the full-batch loss, one compiled call per
        evaluation (the rows are walked in chunks, so memory does not grow
        with n_samples); no ``partial_fit``.
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
        Maximum number of epochs (lbfgs: of iterations).
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState or None, default=None
        Seeds initial weights, shuffling and the validation split.
    tol : float, default=1e-4
        Improvement below which an epoch counts as "no improvement".
    verbose : bool or int, default=False
        Print one line per epoch: loss, time, samples per second (and the
        validation score and loss with early stopping); lbfgs prints the loss
        per iteration.
    warm_start : bool, default=False
        Continue from the previous fit's weights.
    momentum : float, default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum (SGD).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (stratified for a single output, as
        scikit-learn) and stop when its accuracy stops improving; the best
        weights are restored.  A loss that diverges to nan/inf is recorded as
        nan, training stops there and the best weights are restored, with a
        ConvergenceWarning.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int or np.inf, default=10
        Epochs without improvement before stopping (``np.inf``: never stop on tol).
    max_fun : int, default=15000
        Maximum number of loss evaluations (solver="lbfgs" only).
    backend : {"auto", "cpu", "cuda"}, default="auto"
        Where the math runs; "auto" uses a GPU when one is usable.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the computation (a NumPy dtype of either, such as ``np.float64``,
        is taken too).
    negative_slope : float, default=0.01
        Slope of leaky_relu for z < 0 (>= 0).
    prelu_init : float, default=0.25
        Initial value of every prelu slope.
    elu_alpha : float, default=1.0
        Scale of elu for z < 0 (> 0).
    maxout_pieces : int, default=2
        Affine pieces per maxout unit (>= 2).
    dropout : float or tuple of float, default=0.0
        Inverted dropout of the hidden units during sgd / adam training: one rate
        in [0, 1) for every hidden layer, or a tuple with one rate per hidden
        layer.  Each unit is zeroed with that probability and the kept ones are
        scaled by 1 / (1 - rate); ``predict`` is unchanged (no dropout at
        inference).  The masks are drawn inside the kernels from a counter-based
        hash of (seed, epoch, row index in the training data, layer, unit), so
        the same fit gives the same masks on the CPU and the GPU, with any
        number of threads and any ``batch_size`` split; the seed is one draw
        from ``random_state``.  0.0 (the default) runs the code of a fit without
        dropout, bit for bit.  Not with ``solver="lbfgs"`` (a ValueError:
        L-BFGS needs a deterministic objective), nor with the dask estimators
        (they do not take the parameter).  A parameter scikit-learn lacks.
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

    Notes
    -----
    A fit is a transaction: everything it computes is built on a copy and
    published in one assignment when the fit succeeds.  After an exception
    (a ``KeyboardInterrupt`` included) every attribute, the optimizer state
    that ``partial_fit`` continues from and the label encoding are those of
    before the call, and a ``predict`` running in another thread sees the old
    model or the new one, never a mix.  (scikit-learn keeps the weights
    reached when a fit is interrupted; fastmlp keeps the previous model.)

    While a CPU fit runs (sgd, adam or lbfgs), the BLAS libraries are limited
    to one thread for the whole process (threadpoolctl): the fit's own threads,
    each on whole parts of every batch, are its parallelism, and so the weights
    do not depend on the number of threads; the limit is lifted when the last
    such fit returns.

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
        max_fun=15000,
        backend="auto",
        dtype="float32",
        negative_slope=0.01,
        prelu_init=0.25,
        elu_alpha=1.0,
        maxout_pieces=2,
        dropout=0.0,
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
            max_fun=max_fun, backend=backend, dtype=dtype, negative_slope=negative_slope, prelu_init=prelu_init,
            elu_alpha=elu_alpha, maxout_pieces=maxout_pieces, dropout=dropout,
        )
        self.class_weight = class_weight

    def _prepare_targets(self, X, y, first_pass, incremental, classes):
        """Validate X, y and fix the label encoding (on the draft), as scikit-learn does."""
        X, y = self._validate_Xy(X, y, reset=first_pass)
        y_type = type_of_target(y)
        if y_type not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(
                f"Unknown label type: {y_type!r}. MLPClassifier needs class labels "
                "(binary, multiclass or a multilabel indicator matrix); use MLPRegressor "
                "for continuous targets.")
        if incremental:
            # classes is checked the same way on every call: its unique labels must
            # equal classes_ once classes_ exists
            if _check_partial_fit_first_call(self, classes):
                lb = LabelBinarizer()
                lb.fit(y if y_type.startswith("multilabel") else self.classes_)
                self._label_binarizer = lb
                self.classes_ = lb.classes_
        if (not hasattr(self, "_label_binarizer")
                or (not incremental and (first_pass or not hasattr(self, "classes_")))):
            lb = LabelBinarizer()
            lb.fit(y)
            self._label_binarizer = lb
            self.classes_ = lb.classes_
        else:
            labels = unique_labels(y)
            if self.warm_start and not incremental:
                if set(labels) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {labels}")
            elif len(np.setdiff1d(labels, self.classes_)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {labels}.")
        # a single class is fitted as scikit-learn does: one logistic output whose
        # target is always 0, and predict returns that class
        B = self._label_binarizer.transform(y)
        if self._label_binarizer.y_type_ == "multiclass":
            out = "softmax"
            targets = {"Y": np.zeros((0, 1)), "y": B.argmax(axis=1), "n_outputs": B.shape[1]}
        else:
            out = "logistic"
            targets = {"Y": B.astype(np.float64), "y": np.zeros(0, dtype=np.int64),
                       "n_outputs": B.shape[1]}
        targets["raw"] = y
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
        with np.errstate(all="ignore"):  # a diverging fit may send P to inf/nan
            return self._score_and_loss_checked(P, y, sw)

    def _score_and_loss_checked(self, P, y, sw):
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

    @available_if(lambda est: est._check_solver())
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
            _check_choice("solver", self.solver, list(ALL_SOLVERS))
        if classes is None and getattr(self, "classes_", None) is None:
            # scikit-learn refuses a first call without classes before it reads X and y
            # (so with no DataConversionWarning for a column y), after the parameters
            self._validate_params()
            _check_partial_fit_first_call(self, classes)  # raises
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
        d = self.__dict__  # (the shortcut inline: this is the call one-row serving makes)
        O = _fastpath.predict_raw(self, d, X, False)
        if O is None:
            O = self._predict_full(d, X, False)
        if d["out_activation_"] == "softmax":
            return d["classes_"][O.argmax(axis=1)]
        # logistic outputs: sigmoid(o) > 0.5  <=>  o > 0
        B = (O > 0).astype(int)
        if d["n_outputs_"] == 1:
            return d["_label_binarizer"].inverse_transform(B.ravel())
        return d["_label_binarizer"].inverse_transform(B)

    def predict_proba(self, X):
        """Class probabilities for X, columns ordered as ``classes_``; rows sum to 1.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        P, d = self._predict_raw(X, apply_out=True)
        if d["n_outputs_"] == 1:
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
        max_fun=15000,
        backend="auto",
        dtype="float32",
        negative_slope=0.01,
        prelu_init=0.25,
        elu_alpha=1.0,
        maxout_pieces=2,
        dropout=0.0,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, backend=backend, dtype=dtype, negative_slope=negative_slope, prelu_init=prelu_init,
            elu_alpha=elu_alpha, maxout_pieces=maxout_pieces, dropout=dropout,
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
        with np.errstate(all="ignore"):  # a diverging fit may send P to inf/nan
            return self._score_and_loss_checked(P, y, sw)

    def _score_and_loss_checked(self, P, y, sw):
        P = P.astype(np.float64)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if self.loss == "poisson":
            logP = np.log(np.maximum(P, np.finfo(np.float64).tiny))
            ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
            per_row = (ylogy - Y * logP - Y + P).sum(axis=1)
        else:
            per_row = 0.5 * ((P - Y) ** 2).mean(axis=1)  # the training loss' scale
        pred = P.ravel() if P.shape[1] == 1 else P
        return float(r2_score(y, pred, sample_weight=sw)), float(np.average(per_row, weights=sw))

    @available_if(lambda est: est._check_solver())
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
        P, _ = self._predict_raw(X, apply_out=True)
        return P.ravel() if P.shape[1] == 1 else P


MLP = MLPClassifier
