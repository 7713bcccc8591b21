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
from typing import NamedTuple

import numpy as np

from .backends import get_backend
from .backends.cpu.train import all_finite  # noqa: F401  (also used by the estimators)

MAX_ROWS = 64  # beyond this the validation is no longer what dominates

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)  # (other dtype objects: full path)


class Ready(NamedTuple):
    """What the shortcut needs of one fitted state, valid while that state lasts."""

    spec: object          # the NetSpec
    theta: np.ndarray     # the flat parameter vector
    arrays: tuple         # the published coefs_ / intercepts_ / prelu_alphas_ arrays
    lens: list            # their len() and ndim when recorded: an in-place change of
    ndims: list           # shape keeps the size, so these two tell it (cheaper than .shape)
    n_features: int       # n_features_in_
    backend_name: str     # the backend parameter
    run: object           # run(X, apply_out) -> predictions, or None if X is not finite


# id(estimator) -> (weak reference, Ready).  (A dict on ids: WeakKeyDictionary.get costs more.)
_ready = {}


_ndim = operator.attrgetter("ndim")
_is = operator.is_


def _published(d):
    return (*d["coefs_"], *d["intercepts_"], *(d.get("prelu_alphas_") or ()))


def _checked_predictor(backend, spec, theta):
    """``run`` for a backend without a compiled small-input predictor of its own."""
    def run(X, apply_out):
        if not all_finite(X):
            return None
        return backend.predict(spec, theta, X, apply_out)

    return run


def _prepare(est, d):
    """The ``Ready`` record for the attribute dict d of est, or None when the
    shortcut must not be used: not fitted, fitted with feature names, or coefs_ /
    intercepts_ / prelu_alphas_ no longer the views of the flat vector (the user
    assigned arrays)."""
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
    backend = get_backend(name)
    make = getattr(backend, "small_predictor", None)
    run = make(spec, theta) if make is not None else _checked_predictor(backend, spec, theta)
    arrays = _published(d)
    rec = Ready(spec, theta, arrays, list(map(len, arrays)), list(map(_ndim, arrays)),
                d.get("n_features_in_"), name, run)
    key = id(est)
    _ready[key] = (weakref.ref(est, lambda _, key=key: _ready.pop(key, None)), rec)
    return rec


def predict_raw(est, d, X, apply_out):
    """The forward pass on a small input, or None when the full path must run.

    The full validation would accept X unchanged (a small, finite,
    C-contiguous float ``ndarray`` of the fitted width) and the fitted state
    allows the shortcut.  ``d`` is the estimator's attribute dict, read once
    by the caller, so that the whole call sees one fitted state even while a
    fit publishes a new one.  NaN and inf are found by the forward pass's own
    first loop (CPU) and send X to the full path, which raises the usual error.
    """
    if type(X) is not np.ndarray or X.ndim != 2 or not 0 < X.shape[0] <= MAX_ROWS:
        return None
    dt = X.dtype
    if ((dt is not _F32 and dt is not _F64) or X.shape[1] != d.get("n_features_in_")
            or not X.flags.c_contiguous):
        return None
    entry = _ready.get(id(est))
    rec = entry[1] if entry is not None and entry[0]() is est else None
    if rec is not None:
        # still the fitted state rec was made from: the same flat vector and spec, and
        # the same published arrays (objects and shapes).  (Inline: a call costs ~0.1 us.)
        arrays = _published(d)
        if not (d.get("_theta") is rec.theta and d.get("_spec") is rec.spec
                and d.get("backend") == rec.backend_name and "feature_names_in_" not in d
                and d.get("n_features_in_") == rec.n_features
                and len(arrays) == len(rec.arrays) and all(map(_is, arrays, rec.arrays))
                and list(map(len, arrays)) == rec.lens and list(map(_ndim, arrays)) == rec.ndims):
            rec = None
    if rec is None:
        rec = _prepare(est, d)
        if rec is None:
            return None
    if dt is not rec.spec.dtype:
        X = X.astype(rec.spec.dtype)  # (float64 beyond float32's range: inf, found below)
    return rec.run(X, apply_out)


def small_input(est, d, X):
    """(Ready record, X as the fitted dtype) when ``predict_raw`` would take the
    shortcut for X, else None.  (For tests and tools; ``predict_raw`` does the same
    checks inline.)"""
    ok = predict_raw(est, d, X, False)
    if ok is None:
        return None
    rec = _ready[id(est)][1]
    return rec, X.astype(rec.spec.dtype, copy=False)


def shuffled(order, rng):
    """``sklearn.utils.shuffle(order, random_state=rng)``: the same permutation
    from the same random draws, without the parameter validation and indexing
    machinery that cost ~100 µs per epoch (a few % of a small fit)."""
    idx = np.arange(order.shape[0])
    rng.shuffle(idx)
    return order[idx]
