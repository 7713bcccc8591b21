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

import math
import operator
import weakref

import numpy as np
from numba import njit

from .backends import get_backend

MAX_ROWS = 64  # beyond this the validation is no longer what dominates

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)  # (other dtype objects: full path)
# id(estimator) -> (weak reference, record); the record is (spec, theta, published
# arrays, their shapes, n_features_in_, backend parameter, backend module), valid
# while that fitted state lasts.  (A dict on ids: WeakKeyDictionary.get costs more.)
_ready = {}


@njit(cache=True, nogil=True)
def _all_finite(X):
    """No NaN or inf in the 2-D array X (a fifth of ``np.isfinite(X).all()``'s cost here)."""
    n, d = X.shape
    for i in range(n):
        for j in range(d):
            if not math.isfinite(X[i, j]):
                return False
    return True


_shape = operator.attrgetter("shape")


def _published(d):
    return (*d["coefs_"], *d["intercepts_"], *(d.get("prelu_alphas_") or ()))


def _prepare(est, d):
    """The record of ``_ready`` for est, or None when the shortcut must not be used:
    not fitted, fitted with feature names, or coefs_ / intercepts_ / prelu_alphas_
    no longer the views of the flat vector (the user assigned arrays)."""
    if "coefs_" not in d or "_spec" not in d or "feature_names_in_" in d:
        return None
    name = est.backend
    if not isinstance(name, str):
        return None
    try:
        theta = est._current_theta()
    except Exception:  # inconsistent arrays: the full path raises, after validating X
        return None
    if theta is not d.get("_theta"):
        return None
    arrays = _published(d)
    shapes = list(map(_shape, arrays))
    rec = (d["_spec"], theta, arrays, shapes, d.get("n_features_in_"), name, get_backend(name))
    key = id(est)
    _ready[key] = (weakref.ref(est, lambda _, key=key: _ready.pop(key, None)), rec)
    return rec


def _still_valid(rec, d, name):
    if d.get("_spec") is not rec[0] or d.get("_theta") is not rec[1] or name != rec[5]:
        return False
    if "feature_names_in_" in d or d.get("n_features_in_") != rec[4]:
        return False
    arrays = _published(d)  # the same objects (then arrays), with the same shapes
    return (len(arrays) == len(rec[2]) and all(map(operator.is_, arrays, rec[2]))
            and list(map(_shape, arrays)) == rec[3])


def small_input(est, X):
    """(record, X as the fitted dtype) when the full validation would accept X
    unchanged and the fitted state allows the shortcut, else None."""
    if type(X) is not np.ndarray or X.ndim != 2 or not 0 < X.shape[0] <= MAX_ROWS:
        return None
    d = est.__dict__
    dt = X.dtype
    if (X.shape[1] != d.get("n_features_in_") or (dt is not _F32 and dt is not _F64)
            or not X.flags.c_contiguous or not _all_finite(X)):
        return None
    entry = _ready.get(id(est))
    rec = entry[1] if entry is not None and entry[0]() is est else None
    if rec is None or not _still_valid(rec, d, est.backend):
        rec = _prepare(est, d)
        if rec is None:
            return None
    dtype = rec[0].dtype
    return rec, (X if dt is dtype else X.astype(dtype))


def predict_raw(est, X, apply_out):
    """The forward pass on a small input, or None when the full path must run."""
    ok = small_input(est, X)
    if ok is None:
        return None
    (spec, theta, _, _, _, _, backend), X = ok
    return backend.predict(spec, theta, X, apply_out)


def shuffled(order, rng):
    """``sklearn.utils.shuffle(order, random_state=rng)``: the same permutation
    from the same random draws, without the parameter validation and indexing
    machinery that cost ~100 µs per epoch (a few % of a small fit)."""
    idx = np.arange(order.shape[0])
    rng.shuffle(idx)
    return order[idx]
