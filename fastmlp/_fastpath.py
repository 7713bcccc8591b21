"""Fast paths of the estimators: small-input ``predict`` and the epoch shuffle.

``predict`` on a few rows runs in microseconds:

scikit-learn's ``validate_data`` costs about 50 µs per call, ten times the
forward pass of a small network on one row.  For the input it would hand back
unchanged anyway (a small, finite, C-contiguous float ``ndarray`` of the
fitted width, with no feature names on either side) the estimator may skip it;
every other input, and every failed check, takes the full path, which raises
the usual errors (not fitted, wrong number of features, NaN/inf, ...).

The parameter vector is looked up once per fitted state: while ``coefs_``,
``intercepts_`` (and ``prelu_alphas_``) are still the very views of the flat
vector that ``fit`` published, the flat vector is used as it is, without the
per-call check that ``_current_theta`` makes.
"""

import math
import operator
import weakref

import numpy as np
from numba import njit

from .backends import get_backend

MAX_ROWS = 64  # beyond this the validation is no longer what dominates

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_theta_cache = weakref.WeakKeyDictionary()  # estimator -> what _published saw


@njit(cache=True, nogil=True)
def _all_finite(X):
    """No NaN or inf in the 2-D array X (a fifth of ``np.isfinite(X).all()``'s cost here)."""
    n, d = X.shape
    for i in range(n):
        for j in range(d):
            if not math.isfinite(X[i, j]):
                return False
    return True


def small_input(est, X):
    """X (as the fitted dtype) when the full validation would accept it unchanged, else None."""
    if type(X) is not np.ndarray or X.ndim != 2 or not 0 < X.shape[0] <= MAX_ROWS:
        return None
    d = est.__dict__
    spec = d.get("_spec")
    if (spec is None or "coefs_" not in d or "feature_names_in_" in d
            or X.shape[1] != d.get("n_features_in_") or X.dtype not in _FLOATS
            or not X.flags.c_contiguous or not _all_finite(X)):
        return None
    return X if X.dtype == spec.dtype else X.astype(spec.dtype)


def _published(d):
    """What the user sees: spec, flat vector, and every coef / intercept / slope array."""
    arrays = [*d["coefs_"], *d["intercepts_"], *(d.get("prelu_alphas_") or ())]
    return d["_spec"], d.get("_theta"), arrays, [getattr(a, "shape", None) for a in arrays]


def _same(seen, now):
    return (seen[0] is now[0] and seen[1] is now[1] and len(seen[2]) == len(now[2])
            and all(map(operator.is_, seen[2], now[2])) and seen[3] == now[3])


def current_theta(est):
    """``est._current_theta()``, remembered while the published views stay the same objects."""
    d = est.__dict__
    now = _published(d)
    seen = _theta_cache.get(est)
    if seen is not None and _same(seen, now):
        return now[1]
    theta = est._current_theta()
    if theta is now[1]:  # the views of the flat vector: in-place edits show through
        _theta_cache[est] = now
    return theta


def predict_raw(est, X, apply_out):
    """The forward pass on a small input, or None when the full path must run."""
    Xs = small_input(est, X)
    if Xs is None:
        return None
    return get_backend(est.backend).predict(est._spec, current_theta(est), Xs, apply_out)


def shuffled(order, rng):
    """``sklearn.utils.shuffle(order, random_state=rng)``: the same permutation
    from the same random draws, without the parameter validation and indexing
    machinery that cost ~100 µs per epoch (a few % of a small fit)."""
    idx = np.arange(order.shape[0])
    rng.shuffle(idx)
    return order[idx]
