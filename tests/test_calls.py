"""``fastmlp.backends.cpu.calls.call``: one kernel calls another, as a plain call.

The caller gets what a direct call gives: scalars and arrays back (an array
that is a view of the caller's buffer), literal arguments cast to the
callee's types, and ``None`` arguments pruned as in a direct call.
"""

import numpy as np
from numba import njit

from fastmlp.backends.cpu.calls import call
from fastmlp.backends.cpu.train import all_finite


@njit(nogil=True)
def _view(buf, col_off, cap, rows, cols):
    """Rows of the workspace buffer viewed as a matrix (an array the caller gets back)."""
    start = col_off * cap
    return buf[start:start + rows * cols].reshape((rows, cols))


@njit
def _finite_by_call(X):
    return call(all_finite, (X,))


@njit
def _view_by_call(buf, cap, rows, cols):
    # literal 2 as the column offset: cast to the callee's int64
    return call(_view, (buf, 2, cap, rows, cols))


def test_a_scalar_comes_back(rng):
    X = rng.standard_normal((7, 5))
    assert _finite_by_call(X) is True
    X[3, 1] = np.nan
    assert _finite_by_call(X) is False
    X[3, 1] = -np.inf
    assert _finite_by_call(X) is False


def test_an_array_comes_back_and_is_a_view(rng):
    buf = rng.standard_normal(40).astype(np.float32)
    V = _view_by_call(buf, 4, 3, 2)
    np.testing.assert_array_equal(V, buf[8:14].reshape(3, 2))
    V[0, 0] = 123.0  # a view of buf, as the callee returns it
    assert buf[8] == 123.0


@njit
def _maybe(x, extra):
    return x + (0.0 if extra is None else extra)


@njit
def _optional_by_call(x):
    return call(_maybe, (x, None)) + call(_maybe, (x, 2.5))


def test_a_none_argument_is_pruned_as_in_a_direct_call():
    assert _optional_by_call(1.0) == 1.0 + 3.5
