"""The compiled training epoch and the chunked forward pass on the CPU.

A network lives in flat buffers so that a whole epoch runs in one compiled
call with no Python per batch or per layer:

- ``theta`` (1-D): every weight matrix (row-major, shape (fan_in, zcols)),
  bias and prelu slope vector; ``grad`` and the optimizer state mirror it.
- ``layers`` (int64, one row per dense layer, columns named below): where
  each layer's parameters sit in ``theta`` and where its batch buffers sit in
  the float workspace ``ws`` and the integer workspace ``iws`` (maxout argmax).
  A buffer of ``c`` columns starting at column offset ``o`` occupies
  ``ws[o * cap : (o + c) * cap]`` and is viewed as (rows, c), rows <= cap.

``fastmlp.backends.layout.make_layout`` builds the table; the estimators
never touch these functions directly, they go through the backend object.
"""

import numpy as np
from numba import njit

from ..._config import FASTMATH
from ..._registry import MAXOUT, SGD
from ..layout import (
    A_OFF, ADAM_T, ARG_OFF, B_OFF, BETA1, BETA2, DH_OFF, DZ_OFF, EPS, FAN_IN, H_OFF, LR,
    MOMENTUM, NESTEROV, UNITS, W_OFF, Z_OFF, ZCOLS,
)
from .dense import dense_backward, dense_forward, hidden_backward
from .losses import output_activation, output_loss
from .optimizers import adam_step, sgd_step


@njit(inline="always")
def _view(buf, col_off, cap, rows, cols):
    start = col_off * cap
    return buf[start:start + rows * cols].reshape((rows, cols))


@njit(inline="always")
def _vec(theta, off, size):
    return theta[off:off + size]


@njit(inline="always")
def _weights(theta, layers, l):
    fi = layers[l, FAN_IN]
    zc = layers[l, ZCOLS]
    off = layers[l, W_OFF]
    return theta[off:off + fi * zc].reshape((fi, zc))


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def forward_batch(Xb, theta, layers, code, param, pieces, ws, iws, cap):
    """Forward pass of m = Xb.shape[0] <= cap rows; returns the logits view (m, n_out)."""
    m = Xb.shape[0]
    L = layers.shape[0]
    Hprev = Xb
    out = Xb
    for l in range(L):
        zc = layers[l, ZCOLS]
        units = layers[l, UNITS]
        W = _weights(theta, layers, l)
        b = _vec(theta, layers[l, B_OFF], zc)
        Z = _view(ws, layers[l, Z_OFF], cap, m, zc)
        H = _view(ws, layers[l, H_OFF], cap, m, units)
        # the argmax cache exists for maxout hidden layers only
        a_rows = m if (code == MAXOUT and l < L - 1) else 0
        A = _view(iws, layers[l, ARG_OFF], cap, a_rows, units)
        if l == L - 1:
            # output layer: logits only, the loss kernel applies the output function
            dense_forward(Hprev, W, b, 0, 0.0, b, 1, Z, Z, A)
            out = Z
        else:
            a_off = layers[l, A_OFF]
            slopes = _vec(theta, a_off if a_off >= 0 else 0, zc if a_off >= 0 else 0)
            if a_off < 0:
                slopes = b  # unused by non-prelu codes; any (zc,) array will do
            dense_forward(Hprev, W, b, code, param, slopes, pieces, Z, H, A)
            Hprev = H
    return out


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def backprop(Xb, Yb, yb, swb, theta, grad, layers, code, param, pieces, out_code,
             scale, lam, ws, iws, cap):
    """Forward and backward pass of the m = Xb.shape[0] <= cap rows of one block.

    Writes grad = scale * sum_i w_i dl_i/dtheta + lam * (weights, not biases).
    Returns (sum_i w_i l_i, sum of squared weights); the second is 0 when
    lam is 0 (the weights are then not read for it).
    """
    m = Xb.shape[0]
    L = layers.shape[0]
    O = forward_batch(Xb, theta, layers, code, param, pieces, ws, iws, cap)
    n_out = O.shape[1]
    dO = _view(ws, layers[L - 1, DZ_OFF], cap, m, n_out)
    data = output_loss(out_code, O, Yb, yb, swb, scale, dO, dO)
    sq = 0.0
    dZ = dO
    for l in range(L - 1, -1, -1):
        zc = layers[l, ZCOLS]
        W = _weights(theta, layers, l)
        dW = _weights(grad, layers, l)
        db = _vec(grad, layers[l, B_OFF], zc)
        if l == 0:
            Hprev = Xb
            dHprev = _view(ws, 0, cap, 0, 1)
        else:
            Hprev = _view(ws, layers[l - 1, H_OFF], cap, m, layers[l - 1, UNITS])
            dHprev = _view(ws, layers[l - 1, DH_OFF], cap, m, layers[l - 1, UNITS])
        sq += dense_backward(Hprev, W, dZ, lam, dW, db, dHprev)
        if l > 0:
            p = l - 1
            pzc = layers[p, ZCOLS]
            units = layers[p, UNITS]
            Z = _view(ws, layers[p, Z_OFF], cap, m, pzc)
            H = _view(ws, layers[p, H_OFF], cap, m, units)
            A = _view(iws, layers[p, ARG_OFF], cap, m if code == MAXOUT else 0, units)
            dZp = _view(ws, layers[p, DZ_OFF], cap, m, pzc)
            a_off = layers[p, A_OFF]
            if a_off >= 0:
                slopes = _vec(theta, a_off, units)
                dslopes = _vec(grad, a_off, units)
            else:
                slopes = _vec(theta, layers[p, B_OFF], pzc)
                dslopes = slopes[:0]
            hidden_backward(dHprev, Z, H, A, code, param, slopes, pieces, dZp, dslopes)
            dZ = dZp
    return data, sq


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def loss_grad_batch(Xb, Yb, yb, swb, theta, grad, layers, code, param, pieces,
                    out_code, alpha, ws, iws, cap):
    """Loss and full gradient (into ``grad``) of one batch.

    loss = sum_i w_i l_i / W + alpha / (2 W) * sum of squared weights,
    W = sum_i w_i (= m without weights), exactly scikit-learn's objective.
    Returns the loss as a float64.
    """
    m = Xb.shape[0]
    if swb.shape[0] > 0:
        wsum = 0.0
        for i in range(m):
            wsum += swb[i]
    else:
        wsum = float(m)
    # a batch whose rows all weigh 0 (possible with class_weight) contributes nothing
    scale = 1.0 / wsum if wsum > 0 else 0.0
    lam = alpha * scale
    data, sq = backprop(Xb, Yb, yb, swb, theta, grad, layers, code, param, pieces,
                        out_code, scale, lam, ws, iws, cap)
    return data * scale + 0.5 * lam * sq


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def loss_grad_sum(X, Y, y, sw, theta, grad, gbuf, layers, code, param, pieces, out_code,
                  ws, iws, cap):
    """Unnormalised full-batch sums over all rows of X, in chunks of ``cap`` rows.

    grad = sum_i w_i dl_i/dtheta (no L2 term, no division by the weight sum);
    returns sum_i w_i l_i.  Memory is one chunk's workspace whatever n is; a
    chunk's gradient goes to ``gbuf`` and is added to ``grad`` (with a single
    chunk it is written to ``grad`` directly).  The caller adds the penalty and
    divides by the weight sum, so blocks of rows held in different places
    (dask workers) can be summed first.
    """
    n = X.shape[0]
    has_Y = Y.shape[0] > 0
    has_y = y.shape[0] > 0
    has_w = sw.shape[0] > 0
    if n <= cap:
        return backprop(X, Y, y, sw, theta, grad, layers, code, param, pieces, out_code,
                        1.0, 0.0, ws, iws, cap)[0]
    grad[:] = 0.0
    total = 0.0
    for start in range(0, n, cap):
        stop = min(n, start + cap)
        total += backprop(
            X[start:stop], Y[start:stop] if has_Y else Y, y[start:stop] if has_y else y,
            sw[start:stop] if has_w else sw, theta, gbuf, layers, code, param, pieces,
            out_code, 1.0, 0.0, ws, iws, cap)[0]
        for j in range(grad.shape[0]):
            grad[j] += gbuf[j]
    return total


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def train_epoch(X, Y, y, sw, order, theta, grad, layers, code, param, pieces,
                out_code, alpha, solver, state1, state2, hyper, ws, iws, cap,
                Xb, Yb, yb, swb):
    """One epoch of minibatch training, entirely compiled.

    Visits the rows of X in the given ``order`` in batches of ``cap`` rows
    (the last one shorter), gathering each batch into the preallocated
    Xb/Yb/yb/swb, computing the loss and gradient, and updating ``theta`` in
    place with SGD (solver SGD; state1 = velocity) or Adam (ADAM; state1,
    state2 = first and second moments; hyper[ADAM_T] counts steps).
    Y (n, k) float targets for the logistic/identity/exp outputs, y (n,)
    integer labels for softmax (the unused one has zero rows); sw per-row
    weights or empty.  Returns sum over batches of batch_loss * batch_rows,
    as scikit-learn accumulates it.  Stops early and returns NaN as soon as
    a batch loss is not finite, so a diverging fit is reported, not hidden.
    """
    n = order.shape[0]
    d = X.shape[1]
    has_Y = Y.shape[0] > 0
    has_y = y.shape[0] > 0
    has_w = sw.shape[0] > 0
    k = Y.shape[1]
    total = 0.0
    for start in range(0, n, cap):
        m = min(cap, n - start)
        for i in range(m):
            r = order[start + i]
            for j in range(d):
                Xb[i, j] = X[r, j]
            if has_Y:
                for j in range(k):
                    Yb[i, j] = Y[r, j]
            if has_y:
                yb[i] = y[r]
            if has_w:
                swb[i] = sw[r]
        loss = loss_grad_batch(
            Xb[:m], Yb[:m] if has_Y else Yb, yb[:m] if has_y else yb,
            swb[:m] if has_w else swb, theta, grad, layers, code, param, pieces,
            out_code, alpha, ws, iws, cap,
        )
        if not np.isfinite(loss):
            return np.nan
        total += loss * m
        if solver == SGD:
            sgd_step(theta, grad, state1, hyper[LR], hyper[MOMENTUM], hyper[NESTEROV] != 0.0)
        else:
            hyper[ADAM_T] += 1.0
            adam_step(theta, grad, state1, state2, hyper[LR], hyper[BETA1],
                      hyper[BETA2], hyper[EPS], hyper[ADAM_T])
    return total


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def predict_forward(X, theta, layers, code, param, pieces, out_code, apply_out,
                    ws, iws, cap, out):
    """Forward pass over any number of rows in chunks of ``cap`` rows.

    Writes the logits (apply_out False) or predictions (apply_out True:
    softmax / sigmoid / identity / exp) into out (n, n_out).  Memory is the
    workspace of one chunk, whatever n is.
    """
    n = X.shape[0]
    for start in range(0, n, cap):
        stop = min(n, start + cap)
        O = forward_batch(X[start:stop], theta, layers, code, param, pieces, ws, iws, cap)
        if apply_out:
            output_activation(out_code, O, out[start:stop])
        else:
            out[start:stop] = O
