"""Fast paths of the estimators: small-input ``predict`` and the epoch shuffle.

``predict`` on a few rows runs in microseconds:

scikit-learn's ``validate_data`` costs about 50 µs per call, ten times the
forward pass of a small network on one row.  For the input it would hand back
unchanged anyway (a small, finite, C-contiguous float ``ndarray`` of the
fitted width, with no feature names on either side) the estimator may skip it;
every other input, and every failed check, takes the full path, which raises
the usual errors (not fitted, wrong number of features, NaN/inf, ...).

The fitted state is looked at once: while ``coefs_``, ``intercepts_`` (and
``prelu_alphas_``) are still the very views of the flat vector that ``fit``
published (same objects, same shapes), the flat vector is used as it is,
without the per-call check that ``_current_theta`` makes; arrays the user
assigned instead take the full path.
"""

import operator
import weakref

import numpy as np

from .backends import get_backend
from .backends.cpu.train import all_finite  # noqa: F401  (also used by the estimators)

# Up to this many rows a predict may skip scikit-learn's validation.  At 100
# rows (100 features, hidden (128, 64)) the validation and the full path's
# bookkeeping took ~175 us of a ~195 us call (the compiled pass ~20 us); they
# cost the same at any size, so the shortcut pays up to where the pass itself
# dominates, past 1000 rows.  The workspace a thread keeps stays small
# (``backends.cpu.small_predictor`` runs more rows in chunks).
MAX_ROWS = 1024

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)  # (other dtype objects: full path)


# id(estimator) -> (weak reference to it, its ``fast`` function; see ``_prepare``).
# (A dict on ids: WeakKeyDictionary.get costs more.)
_ready = {}

_STALE = object()  # what ``fast`` answers when the fitted state it was made for has changed
_is = operator.is_


def _published(d):
    return (*d.get("coefs_", ()), *d.get("intercepts_", ()), *(d.get("prelu_alphas_") or ()))


def _checked_predictor(backend, spec, theta):
    """``run`` for a backend without a compiled small-input predictor of its own."""
    def run(X, apply_out):
        if not all_finite(X):
            return None
        return backend.predict(spec, theta, X, apply_out)

    return run


def _suits(X, n_features):
    """Whether the full validation would hand the ndarray X back unchanged: 2-D,
    1 to MAX_ROWS rows of n_features columns, float32 or float64, C-contiguous
    (finiteness is checked by the forward pass)."""
    shape = X.shape
    dt = X.dtype
    return (len(shape) == 2 and 0 < shape[0] <= MAX_ROWS and shape[1] == n_features
            and (dt is _F32 or dt is _F64) and X.flags.c_contiguous)


def _prepare(est, d):
    """``fast(d, X, apply_out)`` for the fitted state in the attribute dict d of est, or
    None when the shortcut must not be used: not fitted, fitted with feature names, or
    coefs_ / intercepts_ / prelu_alphas_ no longer the views of the flat vector (the user
    assigned arrays).

    ``fast`` answers the forward pass of X (None when X holds NaN or inf), or ``_STALE``
    when d no longer holds the state it was made for: another flat vector or spec, or
    published arrays that are other objects or have other shapes (an in-place change of
    shape keeps the size).  Everything it compares against is a local of this closure:
    the checks still cost about 1.8 us a call, more than the compiled forward pass of
    a small network (1 us).
    """
    if "coefs_" not in d or "_spec" not in d or "feature_names_in_" in d:
        return None
    name = d.get("backend")
    if not isinstance(name, str):
        return None
    try:
        theta = est._view(d)._current_theta()
    except Exception:  # inconsistent arrays: the full path raises, after validating X
        return None
    if theta is not d.get("_theta"):
        return None
    spec = d["_spec"]
    if d.get("n_features_in_") != spec.n_features:  # assigned: the full path raises
        return None
    dtype = spec.dtype
    backend = get_backend(name)
    make = getattr(backend, "small_predictor", None)
    run = make(spec, theta) if make is not None else _checked_predictor(backend, spec, theta)
    arrays = _published(d)
    shapes = [a.shape for a in arrays]
    n_arrays = len(arrays)
    n_features = d.get("n_features_in_")

    def fast(d, X, apply_out):
        shape = X.shape  # (``_suits`` inline: a call costs ~0.1 us)
        dt = X.dtype
        if (len(shape) != 2 or not 0 < shape[0] <= MAX_ROWS or shape[1] != n_features
                or (dt is not _F32 and dt is not _F64) or not X.flags.c_contiguous):
            return None
        if not (d.get("_theta") is theta and d.get("_spec") is spec
                and d.get("backend") == name and "feature_names_in_" not in d
                and d.get("n_features_in_") == n_features):
            return _STALE
        A = _published(d)
        if len(A) != n_arrays or not all(map(_is, A, arrays)) or [a.shape for a in A] != shapes:
            return _STALE
        if dt is not dtype:
            X = X.astype(dtype)  # (float64 beyond float32's range: inf, found by run)
        return run(X, apply_out)

    key = id(est)
    _ready[key] = (weakref.ref(est, lambda _, key=key: _ready.pop(key, None)), fast)
    return fast


def predict_raw(est, d, X, apply_out):
    """The forward pass on a small input, or None when the full path must run.

    The full validation would accept X unchanged (a small, finite,
    C-contiguous float ``ndarray`` of the fitted width) and the fitted state
    allows the shortcut.  ``d`` is the estimator's attribute dict, read once
    by the caller, so that the whole call sees one fitted state even while a
    fit publishes a new one.  NaN and inf are found by the forward pass's own
    first loop (CPU) and send X to the full path, which raises the usual error.
    """
    if type(X) is not np.ndarray:
        return None
    entry = _ready.get(id(est))
    if entry is not None and entry[0]() is est:
        out = entry[1](d, X, apply_out)  # (None also when X does not suit)
        if out is not _STALE:
            return out
    elif not _suits(X, d.get("n_features_in_")):
        return None
    fast = _prepare(est, d)
    if fast is None:
        return None
    out = fast(d, X, apply_out)
    return None if out is _STALE else out


def small_input(est, d, X):
    """(the ``fast`` function, X as the fitted dtype) when ``predict_raw`` would take the
    shortcut for X, else None.  (For tests and tools; ``predict_raw`` does the same
    checks inline.)"""
    ok = predict_raw(est, d, X, False)
    if ok is None:
        return None
    return _ready[id(est)][1], X.astype(d["_spec"].dtype, copy=False)


def shuffled(order, rng):
    """``sklearn.utils.shuffle(order, random_state=rng)``: the same permutation
    from the same random draws, without the parameter validation and indexing
    machinery that cost ~100 µs per epoch (a few % of a small fit)."""
    idx = np.arange(order.shape[0])
    rng.shuffle(idx)
    return order[idx]
