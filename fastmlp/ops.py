"""The building blocks as plain functions on NumPy arrays.

Each function validates its input, allocates its output and calls the CPU
kernel of ``fastmlp.backends.cpu`` that the estimators use, so the fast
kernels are usable on their own:

>>> import numpy as np
>>> from fastmlp import ops
>>> ops.softmax(np.array([[1.0, 2.0, 0.0]])).round(3)
array([[0.245, 0.665, 0.09 ]])
>>> ops.one_hot([2, 0], 3)
array([[0., 0., 1.],
       [1., 0., 0.]])
"""

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


def _float2d(name, a, dtype=None):
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}.")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got {a.ndim} dimensions.")
    if dtype is None:
        dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(a, dtype=dtype)


def _nonempty_rows(Z):
    if Z.shape[1] == 0:
        raise ValueError(f"Z must have at least one column (class), got shape {Z.shape}.")
    return Z


def _param(name, negative_slope, elu_alpha):
    if name == "leaky_relu":
        return float(negative_slope)
    if name == "elu":
        return float(elu_alpha)
    return 0.0


def activation(name, Z, *, negative_slope=0.01, slopes=None, elu_alpha=1.0, pieces=2):
    """Apply the hidden activation ``name`` to Z (n, m); returns H (and argmax for maxout).

    Parameters
    ----------
    name : str
        One of ``fastmlp._registry.ACTIVATIONS`` (or "sigmoid").
    Z : array-like of shape (n, m)
        Pre-activations; float32 and float64 are kept, other types become float64.
    negative_slope, elu_alpha : float
        Parameters of leaky_relu and elu.
    slopes : array-like of shape (m,), optional
        Per-unit slopes for prelu (default 0.25 everywhere).
    pieces : int
        Pieces per unit for maxout (m must be a multiple of it).

    Returns
    -------
    H : ndarray of shape (n, m), or (n, m // pieces) for maxout
    argmax : ndarray of shape (n, m // pieces), maxout only

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.activation("relu", np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """
    name = resolve_activation(name)
    Z = _float2d("Z", Z)
    n, m = Z.shape
    code = ACTIVATIONS[name].code
    bias = np.zeros(m, dtype=Z.dtype)
    work = Z.copy()
    if code == MAXOUT:
        if int(pieces) < 2 or m % int(pieces):
            raise ValueError(f"maxout needs pieces >= 2 dividing the {m} columns, got {pieces}.")
        H = np.empty((n, m // pieces), dtype=Z.dtype)
        arg = np.empty((n, m // pieces), dtype=np.int32)
        _act.maxout_forward_parallel(work, bias, int(pieces), H, arg)
        return H, arg
    s = _slopes(slopes, m, Z.dtype) if code == PRELU else bias
    H = np.empty_like(Z)
    _act.bias_act_forward_parallel(work, bias, code, _param(name, negative_slope, elu_alpha), s, H)
    return H


def _slopes(slopes, m, dtype):
    if slopes is None:
        return np.full(m, 0.25, dtype=dtype)
    s = np.ascontiguousarray(np.broadcast_to(np.asarray(slopes, dtype=dtype), (m,)))
    return s


def activation_grad(name, dH, Z, *, negative_slope=0.01, slopes=None, elu_alpha=1.0,
                    pieces=2, argmax=None):
    """Backward of ``activation``: dZ = dH * act'(Z) (and dslopes for prelu).

    Parameters
    ----------
    name : str
        The activation.
    dH : array-like of shape (n, m)
        Gradient w.r.t. the activation's output ((n, m // pieces) for maxout).
    Z : array-like of shape (n, m)
        The pre-activation the forward pass saw.
    argmax : array-like, maxout only
        The forward pass's argmax (recomputed from Z when omitted).

    Returns
    -------
    dZ : ndarray of shape (n, m)
    dslopes : ndarray of shape (m,), prelu only

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
        if argmax is None:
            _, argmax = activation("maxout", Z, pieces=pieces)
        argmax = np.ascontiguousarray(argmax, dtype=np.int32)
        if dH.shape != argmax.shape:
            raise ValueError(f"dH must have shape {argmax.shape} for maxout, got {dH.shape}.")
        dZ = np.empty_like(Z)
        _hidden_backward(dH, Z, Z, argmax, code, 0.0, Z[0], int(pieces), dZ, Z[0, :0])
        return dZ
    if dH.shape != Z.shape:
        raise ValueError(f"dH and Z must have the same shape, got {dH.shape} and {Z.shape}.")
    s = _slopes(slopes, m, Z.dtype) if code == PRELU else np.zeros(m, Z.dtype)
    H = activation(name, Z, negative_slope=negative_slope, slopes=s, elu_alpha=elu_alpha)
    dZ = np.empty_like(Z)
    dslopes = np.zeros(m, dtype=Z.dtype)
    arg = np.zeros((0, m), dtype=np.int32)
    _hidden_backward(dH, Z, H, arg, code, _param(name, negative_slope, elu_alpha), s, 1, dZ,
                     dslopes if code == PRELU else dslopes[:0])
    return (dZ, dslopes) if code == PRELU else dZ


def identity(Z):
    """Identity activation (a copy of Z as a float array).

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

    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.sigmoid(np.array([[-1000.0, 0.0, 1000.0]]))
    array([[0. , 0.5, 1. ]])
    """
    return activation("logistic", Z)


logistic = sigmoid


def tanh(Z):
    """Hyperbolic tangent, finite for any input.

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

    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.relu(np.array([[-2.0, 3.0]]))
    array([[0., 3.]])
    """
    return activation("relu", Z)


def leaky_relu(Z, negative_slope=0.01):
    """Z where Z > 0, negative_slope * Z elsewhere.

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

    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.softmax(np.array([[1e4, 0.0]]))
    array([[1., 0.]])
    """
    Z = _nonempty_rows(_float2d("Z", Z))
    P = np.empty_like(Z)
    _loss.softmax_rows_parallel(Z, P)
    return P


def log_softmax(Z):
    """Row-wise Z - max - log sum exp(Z - max), never log(softmax(Z)).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.log_softmax(np.array([[1e4, 0.0]]))
    array([[     0., -10000.]])
    """
    Z = _nonempty_rows(_float2d("Z", Z))
    out = np.empty_like(Z)
    _loss.log_softmax_rows(Z, out)
    return out


def _labels(y, n, k):
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must be 1-D of length {n}, got shape {y.shape}.")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"labels must be integers, got dtype {y.dtype}.")
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}), got values from {y.min()} to {y.max()}.")
    return np.ascontiguousarray(y, dtype=np.int64)


def _weights(sample_weight, n, dtype):
    if sample_weight is None:
        return np.zeros(0, dtype=dtype), 1.0 / max(n, 1)
    w = np.ascontiguousarray(sample_weight, dtype=dtype)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}.")
    return w, 1.0 / float(w.sum())


def softmax_cross_entropy(Z, y, sample_weight=None):
    """Fused stable softmax + mean cross-entropy; returns (loss, dZ, P).

    loss = mean_i -log softmax(Z)_i,y_i (weighted mean with sample_weight);
    dZ = w_i (P - onehot(y)) / sum(w), the gradient of that loss w.r.t. Z.

    >>> import numpy as np
    >>> from fastmlp import ops
    >>> loss, dZ, P = ops.softmax_cross_entropy(np.array([[1e4, 0.0]]), [1])
    >>> float(loss)
    10000.0
    """
    Z = _nonempty_rows(_float2d("Z", Z))
    n, k = Z.shape
    y = _labels(y, n, k)
    w, scale = _weights(sample_weight, n, Z.dtype)
    dZ = np.empty_like(Z)
    total = _loss.softmax_cross_entropy(Z, y, w, scale, dZ, dZ)
    P = softmax(Z)
    return total * scale, dZ, P


def sigmoid_binary_cross_entropy(Z, Y, sample_weight=None):
    """Fused sigmoid + binary cross-entropy summed over columns, mean over rows.

    Returns (loss, dZ, P) with dZ = w_i (sigmoid(Z) - Y) / sum(w).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> loss, dZ, P = ops.sigmoid_binary_cross_entropy(np.array([[0.0]]), np.array([[1.0]]))
    >>> round(float(loss), 4), dZ
    (0.6931, array([[-0.5]]))
    """
    Z = _float2d("Z", Z)
    Y = _float2d("Y", Y, Z.dtype)
    if Y.shape != Z.shape:
        raise ValueError(f"Y must have the shape of Z {Z.shape}, got {Y.shape}.")
    n = Z.shape[0]
    w, scale = _weights(sample_weight, n, Z.dtype)
    P = np.empty_like(Z)
    dZ = np.empty_like(Z)
    total = _loss.sigmoid_binary_cross_entropy(Z, Y, w, scale, P, dZ)
    return total * scale, dZ, P


def squared_error(O, Y, sample_weight=None):
    """Half squared error summed over columns, mean over rows; returns (loss, dO).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> loss, dO = ops.squared_error(np.array([[3.0, 1.0]]), np.array([[1.0, 1.0]]))
    >>> float(loss), dO
    (2.0, array([[2., 0.]]))
    """
    O = _float2d("O", O)
    Y = _float2d("Y", Y, O.dtype)
    if Y.shape != O.shape:
        raise ValueError(f"Y must have the shape of O {O.shape}, got {Y.shape}.")
    w, scale = _weights(sample_weight, O.shape[0], O.dtype)
    P = np.empty_like(O)
    dO = np.empty_like(O)
    total = _loss.squared_error(O, Y, w, scale, P, dO)
    return total * scale, dO


def one_hot(labels, n_classes, dtype=np.float64):
    """Rows of the identity: out[i, labels[i]] = 1.

    >>> from fastmlp import ops
    >>> ops.one_hot([1], 3)
    array([[0., 1., 0.]])
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}.")
    labels = np.asarray(labels)
    y = _labels(labels.reshape(-1), labels.size, int(n_classes))
    out = np.empty((y.shape[0], int(n_classes)), dtype=dtype)
    _loss.one_hot(y, out)
    return out


def dense_forward(X, W, b, activation_name="relu", *, negative_slope=0.01, slopes=None,
                  elu_alpha=1.0, pieces=2):
    """One dense layer: Z = X @ W + b, H = act(Z); returns (H, cache) for ``dense_backward``.

    >>> import numpy as np
    >>> from fastmlp import ops
    >>> H, cache = ops.dense_forward(np.ones((1, 2)), np.ones((2, 3)), np.zeros(3))
    >>> H
    array([[2., 2., 2.]])
    """
    name = resolve_activation(activation_name)
    X = _float2d("X", X)
    W = _float2d("W", W, X.dtype)
    b = np.ascontiguousarray(np.asarray(b, dtype=X.dtype).reshape(-1))
    if X.shape[1] != W.shape[0] or b.shape[0] != W.shape[1]:
        raise ValueError(f"shapes do not chain: X {X.shape}, W {W.shape}, b {b.shape}.")
    Z = X @ W + b
    res = activation(name, Z, negative_slope=negative_slope, slopes=slopes,
                     elu_alpha=elu_alpha, pieces=pieces)
    H = res[0] if name == "maxout" else res
    cache = {"X": X, "W": W, "Z": Z, "name": name, "negative_slope": negative_slope,
             "slopes": slopes, "elu_alpha": elu_alpha, "pieces": pieces,
             "argmax": res[1] if name == "maxout" else None}
    return H, cache


def dense_backward(dH, cache, alpha=0.0, need_dX=True):
    """Backward of ``dense_forward``: returns (dW, db, dX) (dX None when not needed).

    dZ = dH * act'(Z);  dW = X^T dZ + alpha W;  db = sum_rows dZ;  dX = dZ W^T.
    For prelu the slope gradient is in ``cache["dslopes"]`` afterwards.

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
    X, W, Z = cache["X"], cache["W"], cache["Z"]
    g = activation_grad(cache["name"], dH, Z, negative_slope=cache["negative_slope"],
                        slopes=cache["slopes"], elu_alpha=cache["elu_alpha"],
                        pieces=cache["pieces"], argmax=cache["argmax"])
    if cache["name"] == "prelu":
        dZ, cache["dslopes"] = g
    else:
        dZ = g
    dZ = np.ascontiguousarray(dZ)
    dW = np.empty_like(W)
    db = np.empty(W.shape[1], dtype=W.dtype)
    dX = np.empty((X.shape[0] if need_dX else 0, X.shape[1]), dtype=X.dtype)
    _dense_backward(X, W, dZ, float(alpha), dW, db, dX)
    return dW, db, (dX if need_dX else None)
