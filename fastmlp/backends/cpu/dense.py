"""Dense layers on the CPU: GEMM through BLAS (NumPy's: see ``blas``), bias +
activation fused into the epilogue.

Forward caches what backward needs (see ``activations``): the layer input is
kept by the caller, ``Z`` for prelu, ``H`` (in the ``Z`` buffer) for the
others, the argmax for maxout.

A sparse first layer (``csr_matmul``, ``csr_grads``) multiplies the CSR rows
of the batch directly: O(non-zeros x columns of W) instead of
O(rows x features x columns), and no dense copy of the rows.  The rows are
named by position: ``rows[first + i]`` with a row order (an epoch's
shuffle), ``first + i`` without (``rows`` None: full batch, predict).
"""

from numba import njit

from .calls import CALLEE_MATH
from ..._registry import MAXOUT, PRELU
from .activations import (
    act_backward, bias_act_forward, maxout_backward, maxout_forward, prelu_slope_grad,
)
from .blas import gemm


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
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


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
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


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
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


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
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


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH, no_cpython_wrapper=True,
      no_cfunc_wrapper=True)
def csr_matmul(data, indices, indptr, rows, first, W, Z):
    """Z = X_b @ W for the m = Z.shape[0] CSR rows of the batch (see the module docstring).

    data, indices, indptr: the CSR arrays of X (n, fan_in), any index order,
    duplicates allowed (they add up).  W: (fan_in, zcols), read only.
    Z: (m, zcols), written (an empty row gives a zero row).
    """
    m, zc = Z.shape
    for i in range(m):
        r = first + i
        if rows is not None:
            r = rows[first + i]
        z = Z[i]  # (row views and zero-based loops: indices of unknown sign would be
        for j in range(zc):  # checked for wraparound at each access, and not vectorise)
            z[j] = 0.0
        for k in range(indptr[r], indptr[r + 1]):
            v = data[k]
            w = W[indices[k]]
            for j in range(zc):
                z[j] += v * w[j]


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH, no_cpython_wrapper=True,
      no_cfunc_wrapper=True)
def csr_grads(data, indices, indptr, rows, first, dZ, dW, db):
    """Gradients of a sparse first layer (the twin of ``dense_grads`` without dHprev).

    dW = X_b^T @ dZ (every entry written: zeros, then each non-zero's row of
    dZ scattered into its feature's row of dW, rows in batch order);
    db = sum_rows dZ.  dZ: (m, zcols) for the batch's m CSR rows; dW:
    (fan_in, zcols); db: (zcols,).
    """
    m, zc = dZ.shape
    fi = dW.shape[0]
    for c in range(fi):
        for j in range(zc):
            dW[c, j] = 0.0
    for j in range(zc):
        db[j] = 0.0
    for i in range(m):
        r = first + i
        if rows is not None:
            r = rows[first + i]
        dz = dZ[i]  # (row views: see csr_matmul)
        for j in range(zc):
            db[j] += dz[j]
        for k in range(indptr[r], indptr[r + 1]):
            v = data[k]
            dw = dW[indices[k]]
            for j in range(zc):
                dw[j] += v * dz[j]


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH, no_cpython_wrapper=True,
      no_cfunc_wrapper=True)
def input_grads(Xb, S, rows, first, W, dZ, dW, db):
    """dW, db of the first layer (its input needs no gradient): ``dense_grads`` of the
    dense rows Xb (S None), or ``csr_grads`` of the CSR rows ``first:first + m`` of
    ``rows`` in S = (data, indices, indptr) (Xb None).
    """
    if Xb is not None:
        dense_grads(Xb, W, dZ, dW, db, dZ[:0])
    if S is not None:
        data, indices, indptr = S
        csr_grads(data, indices, indptr, rows, first, dZ, dW, db)
