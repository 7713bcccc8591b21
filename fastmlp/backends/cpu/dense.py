"""Dense layers on the CPU: GEMM through BLAS (NumPy's: see ``blas``), bias +
activation fused into the epilogue.

Forward caches what backward needs (see ``activations``): the layer input is
kept by the caller, ``Z`` for prelu, ``H`` (in the ``Z`` buffer) for the
others, the argmax for maxout.
"""

from numba import njit

from ..._config import FASTMATH
from ..._registry import MAXOUT, PRELU
from .activations import (
    act_backward, bias_act_forward, maxout_backward, maxout_forward, prelu_slope_grad,
)
from .blas import gemm


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def dense_forward(Hprev, W, b, code, param, slopes, pieces, Z, H, argmax):
    """Z = Hprev @ W + b;  H = act(Z).

    Hprev: (n, fan_in); W: (fan_in, zcols); b: (zcols,); Z: (n, zcols) written.
    H: (n, units) written; for codes that cache H it may be Z itself.
    For maxout zcols = units * pieces and argmax (n, units) receives the winners.
    The GEMM goes through BLAS; the bias and activation are applied while
    each row is still in cache.
    """
    gemm(Hprev, W, Z)
    if code == MAXOUT:
        maxout_forward(Z, b, pieces, H, argmax)
    else:
        bias_act_forward(Z, b, code, param, slopes, H)


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def dense_grads(Hprev, W, dZ, dW, db, dHprev):
    """Gradients of one dense layer from dZ = dL/dZ, without a penalty.

    dW = Hprev^T @ dZ;  db = sum_rows dZ;  dHprev = dZ @ W^T (skipped when
    dHprev has zero rows, as for the first layer).  What the training kernels
    call: they add the L2 term over the whole parameter vector at once
    (``train.finish_gradient``).
    """
    gemm(Hprev.T, dZ, dW)
    n, fo = dZ.shape
    for j in range(fo):
        db[j] = 0.0
    for i in range(n):
        for j in range(fo):
            db[j] += dZ[i, j]
    if dHprev.shape[0] > 0:
        gemm(dZ, W.T, dHprev)


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def dense_backward(Hprev, W, dZ, lam, dW, db, dHprev):
    """``dense_grads`` plus the L2 term: dW += lam * W.

    Returns sum(W^2), which the caller turns into the L2 part of the loss, so
    the weights are read once for both.
    """
    dense_grads(Hprev, W, dZ, dW, db, dHprev)
    sq = 0.0
    if lam != 0.0:
        fi, fo = W.shape
        for i in range(fi):
            for j in range(fo):
                w = W[i, j]
                sq += w * w
                dW[i, j] += lam * w
    return sq


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def hidden_backward(dH, Z, H, argmax, code, param, slopes, pieces, dZ, dslopes):
    """dZ from dH through the activation; prelu also writes its slope gradient.

    dH: (n, units); Z, H: the forward cache; dZ: (n, zcols), may be dH unless maxout.
    dslopes: (units,) written for prelu, untouched otherwise.
    """
    if code == MAXOUT:
        maxout_backward(dH, argmax, pieces, dZ)
        return
    if code == PRELU:
        prelu_slope_grad(dH, Z, dslopes)
    act_backward(dH, Z, H, code, param, slopes, dZ)
