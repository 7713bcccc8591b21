"""The building blocks as plain functions on NumPy arrays.

Each function validates its input, allocates its output and calls the CPU
kernel of ``fastmlp.backends.cpu`` that the estimators use, so the fast
kernels are usable on their own.

Every function checks its input before any compiled code runs and raises a
``TypeError`` (a non-numeric dtype: object, complex, str, ...; a parameter of the
wrong type) or a ``ValueError`` (shapes that do not fit, labels or argmax
indices out of range, bad sample weights, a mean over no rows, ...) that names
the argument and the problem; no input makes a kernel read or write out of
bounds.  The rules they share:

- Float arrays: float32 and float64 are kept (whatever their byte order);
  bool, integer and other float types become float64.  The first array
  argument sets the dtype the others are converted to.  A 1-D array is one row.
  Non-contiguous, read-only, unaligned or byte-swapped input is copied, never
  written.  NaN and infinities propagate as in NumPy.
- Index arrays (labels, maxout argmax): integers, or floats holding whole
  numbers; bool is refused.  Values must lie in [0, k).
- Scalar parameters: finite real numbers (not bool) within their range;
  integer parameters: Python or NumPy integers.
- 0 rows give empty results, except for the losses: their mean over no rows
  (or over rows whose weights sum to 0) is undefined and raises.

>>> import numpy as np
>>> from fastmlp import ops
>>> ops.softmax(np.array([[1.0, 2.0, 0.0]])).round(3)
array([[0.245, 0.665, 0.09 ]])
>>> ops.one_hot([2, 0], 3)
array([[0., 0., 1.],
       [1., 0., 0.]])
"""

import math
import numbers
import os

import numba
import numpy as np

from ._registry import ACTIVATIONS, MAXOUT, PRELU, resolve_activation
from .backends.cpu import activations as _act
from .backends.cpu import losses as _loss
from .backends.cpu.dense import dense_backward as _dense_backward
from .backends.cpu.dense import hidden_backward as _hidden_backward

__all__ = [
    "activation", "activation_grad", "identity", "sigmoid", "logistic", "tanh", "relu",
    "leaky_relu", "prelu", "elu", "maxout", "softmax", "log_softmax",
    "softmax_cross_entropy", "sigmoid_binary_cross_entropy", "squared_error", "one_hot",
    "dense_forward", "dense_backward",
]

# --- threads, and forked children ---------------------------------------------
#
# The row kernels below run on numba's threads (``prange``), in the threading
# layer numba picks from what is installed: with the pip wheels on Linux that is
# GNU OpenMP ("omp"), whose thread pool cannot be used again in a process forked
# after it started (numba ends such a child: "fork() called from a process
# already using GNU OpenMP").  Forking servers (gunicorn, multiprocessing's
# "fork") warm up in the parent, so a child forked after a parallel kernel ran on
# GNU OpenMP runs the same row kernels on its own thread: the same numbers (each
# row is computed on its own either way), on one core.  The estimators never use
# numba's threads, so they are unaffected.

_serial_rows = False  # True in a child forked after numba's OpenMP pool started


def _after_fork_in_child():
    global _serial_rows
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel ran before the fork: the child starts its own pool
        return
    if layer == "omp":
        _serial_rows = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def _softmax_rows(Z, P):
    (_loss.softmax_rows if _serial_rows else _loss.softmax_rows_parallel)(Z, P)


# --- validation, all of it before any compiled call ---------------------------


def _asarray(name, a):
    """np.asarray, with ragged or unconvertible input reported under the argument's name."""
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} cannot be converted to an array: {e}") from None


def _float_dtype(a):
    """float32 stays float32; everything else numeric computes in float64."""
    return np.float32 if a.dtype.kind == "f" and a.dtype.itemsize == 4 else np.float64


def _kernel_ready(a, dtype):
    """The one layout the kernels are compiled for: C-contiguous, aligned, writeable, native
    byte order (a copy only when ``a`` is not that already; the kernels never write inputs)."""
    return np.require(a, dtype=dtype, requirements="CAW")


def _numeric(name, a):
    a = _asarray(name, a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array (float, int or bool), "
                        f"got dtype {a.dtype}.")
    return a


def _float2d(name, a, dtype=None, allow_1d=True):
    """A 2-D float32/float64 array ready for the kernels (1-D input is one row)."""
    a = _numeric(name, a)
    if a.ndim == 1 and allow_1d:
        a = a[None, :]
    if a.ndim != 2:
        want = "1-D or 2-D" if allow_1d else "2-D"
        raise ValueError(f"{name} must be {want}, got {a.ndim} dimensions (shape {a.shape}).")
    return _kernel_ready(a, _float_dtype(a) if dtype is None else dtype)


def _real(name, v, low=None, low_open=False):
    """A finite real scalar (not bool), optionally >= low (or > low)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__} {v!r}.")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}.")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {v}.")
    return v


def _integer(name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__} {v!r}.")
    return int(v)


def _pieces(pieces, m):
    p = _integer("pieces", pieces)
    if p < 2 or m % p or p > _MAX_PIECES:
        raise ValueError(f"maxout needs pieces >= 2 dividing the {m} columns of Z "
                         f"(and at most {_MAX_PIECES}), got {p}.")
    return p


_MAX_PIECES = np.iinfo(np.int32).max  # argmax is int32


def _indices(name, a, high, what):
    """Integer indices in [0, high): ints, or floats holding whole numbers; never bool."""
    a = _asarray(name, a)
    if a.dtype.kind == "f":
        if a.size and not (np.all(np.isfinite(a)) and np.all(np.mod(a, 1) == 0)):
            raise TypeError(f"{name} must hold integers, got non-integral or non-finite "
                            f"floats.")
    elif a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}.")
    if a.size:
        lo, hi = a.min(), a.max()
        if lo < 0 or hi >= high:
            raise ValueError(f"{name} must lie in [0, {high}) ({what}), got values from "
                             f"{lo} to {hi}.")
    return a


def _param(name, negative_slope, elu_alpha):
    """The activation's scalar parameter, checked as the estimators check it (the kernels'
    derivatives read h > 0 for z > 0, which holds for slopes >= 0 and alpha > 0)."""
    if name == "leaky_relu":
        return _real("negative_slope", negative_slope, low=0.0)
    if name == "elu":
        return _real("elu_alpha", elu_alpha, low=0.0, low_open=True)
    return 0.0


def _slopes(slopes, m, dtype):
    if slopes is None:
        return np.full(m, 0.25, dtype=dtype)
    s = _numeric("slopes", slopes)
    if s.ndim == 0:
        s = np.broadcast_to(s, (m,))
    if s.shape != (m,):
        raise ValueError(f"slopes must have shape ({m},), one per column of Z, got {s.shape}.")
    return _kernel_ready(s, dtype)


def _act_forward(name, Z, param, s, pieces):
    """The kernel call of ``activation`` on a validated Z (s: prelu slopes, pieces: maxout)."""
    n, m = Z.shape
    code = ACTIVATIONS[name].code
    bias = np.zeros(m, dtype=Z.dtype)
    work = Z.copy()  # the kernels add the bias in place
    if code == MAXOUT:
        H = np.empty((n, m // pieces), dtype=Z.dtype)
        arg = np.empty((n, m // pieces), dtype=np.int32)
        (_act.maxout_forward if _serial_rows else _act.maxout_forward_parallel)(
            work, bias, pieces, H, arg)
        return H, arg
    H = np.empty_like(Z)
    (_act.bias_act_forward if _serial_rows else _act.bias_act_forward_parallel)(
        work, bias, code, param, s if code == PRELU else bias, H)
    return H


def _nonempty_columns(Z):
    if Z.shape[1] == 0:
        raise ValueError(f"Z must have at least one column (class), got shape {Z.shape}.")
    return Z


def activation(name, Z, *, negative_slope=0.01, slopes=None, elu_alpha=1.0, pieces=2):
    """Apply the hidden activation ``name`` to Z (n, m); returns H (and argmax for maxout).

    Parameters
    ----------
    name : str
        One of ``fastmlp._registry.ACTIVATIONS`` (or "sigmoid").
    Z : array-like of shape (n, m)
        Pre-activations; float32 and float64 are kept, other types become float64.
    negative_slope, elu_alpha : float
        Parameters of leaky_relu (finite, >= 0) and elu (finite, > 0).
    slopes : array-like of shape (m,), optional
        Per-unit slopes for prelu (default 0.25 everywhere; a scalar is one slope for all).
    pieces : int
        Pieces per unit for maxout (>= 2, m must be a multiple of it).

    Returns
    -------
    H : ndarray of shape (n, m), or (n, m // pieces) for maxout
    argmax : ndarray of shape (n, m // pieces), int32, maxout only

    Raises
    ------
    TypeError
        ``name`` is not a string; Z or slopes is not a real numeric array; a parameter is not
        a real number (pieces: not an integer).
    ValueError
        Unknown ``name``; Z is not 1-D or 2-D; slopes is not of shape (m,); negative_slope < 0,
        elu_alpha <= 0 or either not finite; pieces < 2 or not dividing m.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.activation("relu", np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """
    name = resolve_activation(name)
    Z = _float2d("Z", Z)
    m = Z.shape[1]
    code = ACTIVATIONS[name].code
    if code == MAXOUT:
        return _act_forward(name, Z, 0.0, None, _pieces(pieces, m))
    param = _param(name, negative_slope, elu_alpha)
    s = _slopes(slopes, m, Z.dtype) if code == PRELU else None
    return _act_forward(name, Z, param, s, 1)


def _maxout_argmax(argmax, n, units, pieces):
    a = _indices("argmax", argmax, pieces, f"the winning piece of each of {units} units")
    if a.ndim == 1:
        a = a[None, :]
    if a.shape != (n, units):
        raise ValueError(f"argmax must have the shape of dH ({n}, {units}), got {a.shape}.")
    return _kernel_ready(a, np.int32)


def activation_grad(name, dH, Z, *, negative_slope=0.01, slopes=None, elu_alpha=1.0,
                    pieces=2, argmax=None):
    """Backward of ``activation``: dZ = dH * act'(Z) (and dslopes for prelu).

    Parameters
    ----------
    name : str
        The activation.
    dH : array-like of shape (n, m)
        Gradient w.r.t. the activation's output ((n, m // pieces) for maxout); converted to
        Z's dtype.
    Z : array-like of shape (n, m)
        The pre-activation the forward pass saw.
    negative_slope, slopes, elu_alpha, pieces
        As for ``activation``.
    argmax : array-like of shape (n, m // pieces), maxout only
        The forward pass's argmax, integers in [0, pieces) (recomputed from Z when omitted).

    Returns
    -------
    dZ : ndarray of shape (n, m)
    dslopes : ndarray of shape (m,), prelu only

    Raises
    ------
    TypeError
        As for ``activation``; argmax not integral (bool included).
    ValueError
        As for ``activation``; dH not of the shape above (for maxout: m = units x pieces must
        hold for dH's units and Z's m); argmax of another shape or out of [0, pieces).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.activation_grad("relu", np.array([[5.0, 5.0]]), np.array([[-1.0, 2.0]]))
    array([[0., 5.]])
    """
    name = resolve_activation(name)
    Z = _float2d("Z", Z)
    dH = _float2d("dH", dH, Z.dtype)
    code = ACTIVATIONS[name].code
    n, m = Z.shape
    if code == MAXOUT:
        p = _pieces(pieces, m)
        units = m // p
        if dH.shape[0] != n:
            raise ValueError(f"dH has {dH.shape[0]} rows but Z has {n}.")
        if dH.shape[1] != units:
            raise ValueError(f"dH has {dH.shape[1]} columns but Z has {m} = {units} units x "
                             f"{p} pieces; dH must have shape ({n}, {units}).")
        if argmax is None:
            _, arg = _act_forward(name, Z, 0.0, None, p)
        else:
            arg = _maxout_argmax(argmax, n, units, p)
        dZ = np.empty_like(Z)
        none = np.zeros(0, dtype=Z.dtype)
        _hidden_backward(dH, Z, Z, arg, code, 0.0, none, p, dZ, none)
        return dZ
    if dH.shape != Z.shape:
        raise ValueError(f"dH and Z must have the same shape, got {dH.shape} and {Z.shape}.")
    param = _param(name, negative_slope, elu_alpha)
    s = _slopes(slopes, m, Z.dtype) if code == PRELU else np.zeros(m, Z.dtype)
    H = _act_forward(name, Z, param, s, 1)
    dZ = np.empty_like(Z)
    dslopes = np.zeros(m, dtype=Z.dtype)
    arg = np.zeros((0, m), dtype=np.int32)
    _hidden_backward(dH, Z, H, arg, code, param, s, 1, dZ,
                     dslopes if code == PRELU else dslopes[:0])
    return (dZ, dslopes) if code == PRELU else dZ


def identity(Z):
    """Identity activation (a copy of Z as a float array).

    Raises TypeError or ValueError for bad input, as ``activation`` does.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.identity(np.array([[-1.0, 2.0]]))
    array([[-1.,  2.]])
    """
    return activation("identity", Z)


def sigmoid(Z):
    """Logistic sigmoid 1 / (1 + exp(-Z)), stable for any |Z|.

    Raises TypeError or ValueError for bad input, as ``activation`` does.

    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.sigmoid(np.array([[-1000.0, 0.0, 1000.0]]))
    array([[0. , 0.5, 1. ]])
    """
    return activation("logistic", Z)


logistic = sigmoid


def tanh(Z):
    """Hyperbolic tangent, finite for any input.

    Raises TypeError or ValueError for bad input, as ``activation`` does.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.tanh(np.array([[-1000.0, 0.0, 1000.0]]))
    array([[-1.,  0.,  1.]])
    """
    return activation("tanh", Z)


def relu(Z):
    """max(0, Z).

    Raises TypeError or ValueError for bad input, as ``activation`` does.

    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.relu(np.array([[-2.0, 3.0]]))
    array([[0., 3.]])
    """
    return activation("relu", Z)


def leaky_relu(Z, negative_slope=0.01):
    """Z where Z > 0, negative_slope * Z elsewhere.

    Raises TypeError or ValueError for bad input, as ``activation`` does.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.leaky_relu(np.array([[-2.0, 3.0]]), negative_slope=0.1)
    array([[-0.2,  3. ]])
    """
    return activation("leaky_relu", Z, negative_slope=negative_slope)


def prelu(Z, slopes):
    """Z where Z > 0, slopes[j] * Z elsewhere (one slope per column).

    Raises TypeError or ValueError for bad input, as ``activation`` does.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.prelu(np.array([[-2.0, -2.0]]), slopes=[0.25, 0.5])
    array([[-0.5, -1. ]])
    """
    return activation("prelu", Z, slopes=slopes)


def elu(Z, alpha=1.0):
    """Z where Z > 0, alpha * (exp(Z) - 1) elsewhere.

    Raises TypeError or ValueError for bad input, as ``activation`` does.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.elu(np.array([[-1000.0, 2.0]]))
    array([[-1.,  2.]])
    """
    return activation("elu", Z, elu_alpha=alpha)


def maxout(Z, pieces=2):
    """Max over each group of ``pieces`` adjacent columns; returns (H, argmax).

    Raises TypeError or ValueError for bad input, as ``activation`` does.

    Column ``j * pieces + p`` is piece p of unit j; argmax holds the winning p.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> H, arg = ops.maxout(np.array([[1.0, 3.0, 5.0, 4.0]]), pieces=2)
    >>> H, arg
    (array([[3., 5.]]), array([[1, 0]], dtype=int32))
    """
    return activation("maxout", Z, pieces=pieces)


def softmax(Z):
    """Row-wise stable softmax exp(Z - max) / sum exp(Z - max).

    Raises TypeError for a non-numeric Z, ValueError when Z is not 1-D or 2-D or has no
    column; 0 rows give an empty result.

    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.softmax(np.array([[1e4, 0.0]]))
    array([[1., 0.]])
    """
    Z = _nonempty_columns(_float2d("Z", Z))
    P = np.empty_like(Z)
    _softmax_rows(Z, P)
    return P


def log_softmax(Z):
    """Row-wise Z - max - log sum exp(Z - max), never log(softmax(Z)).

    Raises as ``softmax``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.log_softmax(np.array([[1e4, 0.0]]))
    array([[     0., -10000.]])
    """
    Z = _nonempty_columns(_float2d("Z", Z))
    out = np.empty_like(Z)
    _loss.log_softmax_rows(Z, out)
    return out


def _labels(y, n, k, name="labels"):
    y = _asarray(name, y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}, got shape {y.shape}.")
    y = _indices(name, y, k, f"{k} classes")
    return _kernel_ready(y, np.int64)


def _loss_rows(Z):
    if Z.shape[0] == 0:
        raise ValueError("Z has 0 rows: the mean loss over no rows is undefined.")
    return Z


def _weights(sample_weight, n, dtype):
    """(weights as the kernels take them, 1 / their sum); None means all ones."""
    if sample_weight is None:
        return np.zeros(0, dtype=dtype), 1.0 / n
    w = _numeric("sample_weight", sample_weight)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row, "
                         f"got {w.shape}.")
    with np.errstate(over="ignore"):
        w = _kernel_ready(w, dtype)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"sample_weight must be finite (as {np.dtype(dtype)}), "
                         f"got NaN or infinity.")
    if np.any(w < 0):
        raise ValueError(f"sample_weight must be non-negative, got a minimum of {w.min()}.")
    total = float(np.sum(w, dtype=np.float64))
    if not total > 0:
        raise ValueError("sample_weight sums to 0: the weighted mean loss is undefined.")
    scale = 1.0 / total
    if not (math.isfinite(total) and math.isfinite(scale)):
        raise ValueError(f"sample_weight sums to {total}, which the weighted mean cannot "
                         f"divide by.")
    return w, scale


_LOSS_RAISES = """
    Raises
    ------
    TypeError
        A non-numeric array (object, complex, str, ...){labels}.
    ValueError
        Arrays of mismatched shapes or more than 2 dimensions; Z with 0 rows (the mean over
        no rows is undefined){k}; sample_weight not of shape (n,), not finite, negative or
        summing to 0{range}.
"""


def softmax_cross_entropy(Z, y, sample_weight=None):
    """Fused stable softmax + mean cross-entropy; returns (loss, dZ, P).

    loss = mean_i -log P_i,y_i (weighted mean with sample_weight), P = softmax(Z) clipped to
    [eps, 1 - eps] (eps of Z's dtype) as scikit-learn's log-loss reports it;
    dZ = w_i (P - onehot(y)) / sum(w), the exact gradient (of the unclipped loss).
    y: (n,) integer labels in [0, k) (floats holding whole numbers are accepted).
    {raises}
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> loss, dZ, P = ops.softmax_cross_entropy(np.array([[1e4, 0.0]]), [1])
    >>> round(float(loss), 4)  # -log(eps) of float64: P[0, 1] = exp(-1e4) was clipped
    36.0437
    """
    Z = _loss_rows(_nonempty_columns(_float2d("Z", Z)))
    n, k = Z.shape
    y = _labels(y, n, k)
    w, scale = _weights(sample_weight, n, Z.dtype)
    dZ = np.empty_like(Z)
    total = _loss.softmax_cross_entropy(Z, y, w, scale, dZ, dZ)
    P = np.empty_like(Z)
    _softmax_rows(Z, P)
    return total * scale, dZ, P


softmax_cross_entropy.__doc__ = softmax_cross_entropy.__doc__.replace("    {raises}\n", (
    _LOSS_RAISES.format(labels="; labels not integral (bool included)",
                        k=", or no column", range="; labels out of [0, k)") + "\n"))


def _targets(Z, Y, zname="Z"):
    Y = _float2d("Y", Y, Z.dtype)
    if Y.shape != Z.shape:
        raise ValueError(f"Y must have the shape of {zname} {Z.shape}, got {Y.shape}.")
    return Y


def sigmoid_binary_cross_entropy(Z, Y, sample_weight=None):
    """Fused sigmoid + binary cross-entropy summed over columns, mean over rows.

    Returns (loss, dZ, P) with dZ = w_i (sigmoid(Z) - Y) / sum(w), the exact gradient; the
    loss takes P clipped to [eps, 1 - eps] (eps of Z's dtype) as scikit-learn's log-loss
    does.  Y: (n, k), converted to Z's dtype.
    {raises}
    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> loss, dZ, P = ops.sigmoid_binary_cross_entropy(np.array([[0.0]]), np.array([[1.0]]))
    >>> round(float(loss), 4), dZ
    (0.6931, array([[-0.5]]))
    """
    Z = _loss_rows(_float2d("Z", Z))
    Y = _targets(Z, Y)
    w, scale = _weights(sample_weight, Z.shape[0], Z.dtype)
    P = np.empty_like(Z)
    dZ = np.empty_like(Z)
    total = _loss.sigmoid_binary_cross_entropy(Z, Y, w, scale, P, dZ)
    return total * scale, dZ, P


def squared_error(O, Y, sample_weight=None):
    """Half squared error summed over columns, mean over rows; returns (loss, dO).

    Y: (n, k), converted to O's dtype.
    {raises}
    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> loss, dO = ops.squared_error(np.array([[3.0, 1.0]]), np.array([[1.0, 1.0]]))
    >>> float(loss), dO
    (2.0, array([[2., 0.]]))
    """
    O = _float2d("O", O)
    if O.shape[0] == 0:
        raise ValueError("O has 0 rows: the mean loss over no rows is undefined.")
    Y = _targets(O, Y, "O")
    w, scale = _weights(sample_weight, O.shape[0], O.dtype)
    P = np.empty_like(O)
    dO = np.empty_like(O)
    total = _loss.squared_error(O, Y, w, scale, P, dO)
    return total * scale, dO


for _f in (sigmoid_binary_cross_entropy, squared_error):
    _f.__doc__ = _f.__doc__.replace("    {raises}\n", _LOSS_RAISES.format(
        labels="", k="", range="").replace("Z with 0 rows", "no rows" if _f is squared_error
                                           else "Z with 0 rows") + "\n")
del _f

# dtypes the one_hot kernel is compiled for; any other real dtype goes through float64
_ONE_HOT_DTYPES = {np.dtype(t) for t in (np.float64, np.float32, np.int64, np.int32,
                                         np.int16, np.int8, np.uint8, np.bool_)}


def one_hot(labels, n_classes, dtype=np.float64):
    """Rows of the identity: out[i, labels[i]] = 1.

    labels: (n,) integers in [0, n_classes) (floats holding whole numbers are accepted);
    dtype: any real NumPy dtype (float, int or bool).

    Raises ValueError when n_classes is not a positive integer, labels is not 1-D or holds
    values out of [0, n_classes), or the result would be too large to index; TypeError for
    non-integral labels (bool included) or a dtype that is not real numeric.

    >>> from fastmlp import ops
    >>> ops.one_hot([1], 3)
    array([[0., 1., 0.]])
    """
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, numbers.Integral) \
            or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}.")
    k = int(n_classes)
    labels = _asarray("labels", labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}.")
    n = labels.shape[0]
    y = _labels(labels, n, k)
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype {dtype!r} is not a NumPy dtype: {e}") from None
    if dt.kind not in "biuf":
        raise TypeError(f"dtype must be a real numeric dtype (float, int or bool), got {dt}.")
    if n and k > np.iinfo(np.intp).max // (8 * n):
        raise ValueError(f"one_hot of {n} labels x {k} classes is too large.")
    native = dt.newbyteorder("=")
    out = np.empty((n, k), dtype=native if native in _ONE_HOT_DTYPES else np.float64)
    _loss.one_hot(y, out)
    return out if out.dtype == dt else out.astype(dt)


def dense_forward(X, W, b, activation_name="relu", *, negative_slope=0.01, slopes=None,
                  elu_alpha=1.0, pieces=2):
    """One dense layer: Z = X @ W + b, H = act(Z); returns (H, cache) for ``dense_backward``.

    X: (n, d); W: (d, m) and b: (m,) are converted to X's dtype.  The activation and its
    parameters are as for ``activation`` (maxout: m = units x pieces).

    Raises TypeError for non-numeric arrays or parameters of the wrong type; ValueError when
    the shapes do not chain (X's columns vs W's rows, b not of shape (m,)), W is not 2-D, or
    a parameter is out of range.

    >>> import numpy as np
    >>> from fastmlp import ops
    >>> H, cache = ops.dense_forward(np.ones((1, 2)), np.ones((2, 3)), np.zeros(3))
    >>> H
    array([[2., 2., 2.]])
    """
    name = resolve_activation(activation_name)
    X = _float2d("X", X)
    W = _float2d("W", W, X.dtype, allow_1d=False)
    b = _numeric("b", b)
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"shapes do not chain: X has {X.shape[1]} columns but W has "
                         f"{W.shape[0]} rows (X {X.shape}, W {W.shape}).")
    if b.shape != (W.shape[1],):
        raise ValueError(f"shapes do not chain: b must have shape ({W.shape[1]},), one bias "
                         f"per column of W {W.shape}, got {b.shape}.")
    b = _kernel_ready(b, X.dtype)
    m = W.shape[1]
    code = ACTIVATIONS[name].code
    p = _pieces(pieces, m) if code == MAXOUT else 1
    param = 0.0 if code == MAXOUT else _param(name, negative_slope, elu_alpha)
    s = _slopes(slopes, m, X.dtype) if code == PRELU else None
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and inf propagate, as in the kernels
        Z = X @ W + b
    res = _act_forward(name, Z, param, s, p)
    H = res[0] if code == MAXOUT else res
    cache = {"X": X, "W": W, "Z": Z, "name": name, "negative_slope": negative_slope,
             "slopes": s, "elu_alpha": elu_alpha, "pieces": p if code == MAXOUT else pieces,
             "argmax": res[1] if code == MAXOUT else None}
    return H, cache


_CACHE_ARRAYS = ("X", "W", "Z", "name")


def dense_backward(dH, cache, alpha=0.0, need_dX=True):
    """Backward of ``dense_forward``: returns (dW, db, dX) (dX None when not needed).

    dZ = dH * act'(Z);  dW = X^T dZ + alpha W;  db = sum_rows dZ;  dX = dZ W^T.
    For prelu the slope gradient is in ``cache["dslopes"]`` afterwards.  The cache is checked
    again (it is a plain dict a caller may have changed): its arrays are converted to X's
    dtype and copied when not contiguous.

    Raises TypeError when cache is not a dict, an array is not numeric, alpha is not a real
    number or need_dX not a bool; ValueError when the cache lacks a key or its arrays do not
    fit together, dH is not of the shape of the layer's output, alpha is negative or not
    finite, or a cached activation parameter or maxout argmax is invalid (as for
    ``activation_grad``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> X, W = np.array([[1.0, 2.0]]), np.array([[1.0], [-1.0]])
    >>> H, cache = ops.dense_forward(X, W, np.array([2.0]))   # relu(1 - 2 + 2) = 1
    >>> dW, db, dX = ops.dense_backward(np.array([[1.0]]), cache)
    >>> dW.ravel(), db, dX
    (array([1., 2.]), array([1.]), array([[ 1., -1.]]))
    """
    if not isinstance(cache, dict):
        raise TypeError(f"cache must be the dict dense_forward returned, got "
                        f"{type(cache).__name__}.")
    for key in _CACHE_ARRAYS:
        if key not in cache:
            raise ValueError(f"cache has no {key!r}; pass the cache dense_forward returned.")
    alpha = _real("alpha", alpha, low=0.0)
    if not isinstance(need_dX, (bool, np.bool_, numbers.Integral)):
        raise TypeError(f"need_dX must be a bool, got {type(need_dX).__name__}.")
    name = resolve_activation(cache["name"])
    X = _float2d("cache['X']", cache["X"])
    W = _float2d("cache['W']", cache["W"], X.dtype, allow_1d=False)
    Z = _float2d("cache['Z']", cache["Z"], X.dtype)
    if W.shape[0] != X.shape[1] or Z.shape != (X.shape[0], W.shape[1]):
        raise ValueError(f"the cache's arrays do not fit together: X {X.shape}, W {W.shape}, "
                         f"Z {Z.shape} (Z must be X @ W + b).")
    g = activation_grad(name, dH, Z, negative_slope=cache.get("negative_slope", 0.01),
                        slopes=cache.get("slopes"), elu_alpha=cache.get("elu_alpha", 1.0),
                        pieces=cache.get("pieces", 2), argmax=cache.get("argmax"))
    if name == "prelu":
        dZ, cache["dslopes"] = g
    else:
        dZ = g
    dW = np.empty_like(W)
    db = np.empty(W.shape[1], dtype=W.dtype)
    dX = np.empty((X.shape[0] if need_dX else 0, X.shape[1]), dtype=X.dtype)
    _dense_backward(X, W, dZ, alpha, dW, db, dX)
    return dW, db, (dX if need_dX else None)
