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

How the code is cut into compiled functions is chosen for compile time as
much as for speed.  numba links every compiled callee into its caller and
optimises the whole again, so a chain of six nested kernels (as this file
once had) optimised the innermost code six times: 25 s for a first fit.
Now one function does the per-block work of every training path
(``rows_forward_backward``: gather, forward, loss, backward); the entry
points (``train_epoch``, ``loss_grad_sum``, ``loss_grad_batch``) are
loops around it, and only small loops are inlined into it (numba's inliner
copies the callee's IR at a cost that grows with its size).  The kernels
called once per batch or chunk (``forward_batch``, ``dense_grads``, the
loss, the optimizer step, ...) are called through ``calls.call``, by address,
so that their code is not linked into each caller and optimised again there
(the first fit's compilation: 6.5-6.7 s -> 5.7-6.2 s).  Split epochs
run ``train_epoch`` itself in several threads that meet at a barrier
(``sync``), not a numba parallel loop, whose outlined body cost 4.5 s of a
first fit's 15 s compilation.

What a network does not use is passed as None, and numba compiles a variant
per pattern of None arguments with the code behind ``if x is not None:``
left out (its branch pruning on None-typed arguments): Adam's moments or
SGD's velocity, labels (softmax) or float targets (the other outputs),
sample weights, the argmax workspace (maxout only).  A first fit then
compiles only its own solver, kind of output and activation family (the
digits demo's first fit: 8.7-9.2 s instead of 11.7-11.9 s, in pairs).  Such
a test must be written on the argument itself (``if Y is not None:``), not on
a flag computed from it, or numba types the branch with None and fails; numba
does not prune on literal integers, only on None.  The elementwise activation and
the output among logistic/identity/exp stay run-time codes: a grid search
over those compiles nothing new.
"""

import numpy as np
from numba import njit

from ..._config import FASTMATH
from ..._registry import OUT_IDENTITY, PRELU
from ..layout import (
    A_OFF, ADAM_T, ARG_OFF, B_OFF, BETA1, BETA2, DH_OFF, DZ_OFF, EPS, FAN_IN, H_OFF, LR,
    MOMENTUM, NESTEROV, UNITS, W_OFF, Z_OFF, ZCOLS,
)
from ..scalar import DROP_ALL_KEPT
from .activations import (
    act_backward, bias_act_forward, dropout_backward, dropout_forward, maxout_backward,
    maxout_forward, prelu_slope_grad,
)
from .blas import gemm
from .calls import CALLEE_MATH, call
from .sync import barrier
from .views import borrow, matrix, vector
from .dense import csr_matmul, dense_grads, input_grads
from .losses import output_activation, output_loss
from .optimizers import adam_step, sgd_step

_kernel = njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
# the kernels that only compiled code calls: no CPython wrapper (its boxing and
# unboxing code cost up to 0.2 s of compilation per function)
_inner = njit(nogil=True, cache=True, fastmath=CALLEE_MATH, error_model="numpy",
              no_cpython_wrapper=True, no_cfunc_wrapper=True)
# numba-level inlining, for the small loops that have one caller (see the module docstring)
inline = njit(inline="always", fastmath=FASTMATH)


@inline
def _add_bias(Z, b):
    """Z += b row by row (the output layer: the loss or output function does the rest).
    (A loop of its own: bias_act_forward with a constant code compiled a second copy.)"""
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Z[i, j] += b[j]


@inline
def _drop_forward(drop, l, H):
    """Dropout of hidden layer l's output H (m, units), when the layer has a rate
    (``activations.dropout_forward``).  drop = (rows of the block in the data,
    keep thresholds (L,), [scale; keep] (2, L) in the model's dtype, the epoch's key)."""
    rows, thr, fl, key = drop
    if thr[l] < DROP_ALL_KEPT:
        call(dropout_forward, (H, rows, key, l, thr[l], fl[0, l]))


@inline
def _drop_backward(drop, p, dH, H, code):
    """Back through hidden layer p's dropout: dH masked and scaled, H unscaled in place
    (``activations.dropout_backward``), before the activation's backward."""
    rows, thr, fl, key = drop
    if thr[p] < DROP_ALL_KEPT:
        call(dropout_backward, (dH, H, code, rows, key, p, thr[p], fl[0, p], fl[1, p]))


@_inner
def forward_batch(Xb, S, rows, first, m, theta, layers, code, param, pieces, ws, iws, cap,
                  drop):
    """Forward pass of m <= cap rows; returns the logits view (m, n_out).

    Per layer: Z = Hprev @ W through BLAS, then the bias and activation while
    each row is in cache (maxout also caches its argmax); the output layer
    gets its bias only, the loss or output function does the rest.  The rows:
    Xb (m, n_features) dense with S None, or Xb None and the CSR rows
    ``first:first + m`` of ``rows`` (of X itself, rows None) of
    S = (data, indices, indptr), multiplied where they lie
    (``dense.csr_matmul``).  drop: None (no dropout: predict, lbfgs, a fit
    without it), or the block's dropout arguments (see ``_drop_forward``),
    applied to each hidden layer's output after its activation.  (Tests are on
    the arguments themselves: numba leaves out the branch of an argument that
    is None.)
    """
    L = layers.shape[0]
    out = matrix(ws, 0, m, layers[L - 1, ZCOLS])  # (reassigned: the output layer's Z)
    for l in range(L):
        zc = layers[l, ZCOLS]
        units = layers[l, UNITS]
        W = matrix(theta, layers[l, W_OFF], layers[l, FAN_IN], zc)
        b = vector(theta, layers[l, B_OFF], zc)
        Z = matrix(ws, layers[l, Z_OFF] * cap, m, zc)
        if l > 0:
            gemm(matrix(ws, layers[l - 1, H_OFF] * cap, m, layers[l - 1, UNITS]), W, Z)
        else:
            if Xb is not None:
                gemm(Xb, W, Z)
            if S is not None:
                data, indices, indptr = S
                call(csr_matmul, (data, indices, indptr, rows, first, W, Z))
        if l == L - 1:
            _add_bias(Z, b)
            out = Z
        elif iws is not None:  # maxout, the one activation with an argmax workspace
            H = matrix(ws, layers[l, H_OFF] * cap, m, units)
            A = matrix(iws, layers[l, ARG_OFF] * cap, m, units)
            call(maxout_forward, (Z, b, pieces, H, A))
            if drop is not None:
                _drop_forward(drop, l, H)
        else:
            # H is Z itself (its columns are the H columns) unless prelu keeps Z
            H = matrix(ws, layers[l, H_OFF] * cap, m, units)
            a_off = layers[l, A_OFF]
            slopes = vector(theta, a_off, zc) if a_off >= 0 else b
            call(bias_act_forward, (Z, b, code, param, slopes, H))
            if drop is not None:
                _drop_forward(drop, l, H)
    return out


@inline
def backward_batch(Xb, S, order, first, m, Yb, yb, swb, theta, grad, layers, code, param,
                   pieces, out_code, scale, ws, iws, cap, drop):
    """Loss and backward pass of the m rows that ``forward_batch`` just ran.

    Writes grad = scale * sum_i w_i dl_i/dtheta (no L2 term: see
    ``finish_gradient``) and returns sum_i w_i l_i.  The rows are Xb (dense),
    or with S = (data, indices, indptr) the CSR rows ``first:first + m`` of
    ``order`` (or of X, order None).  drop: as ``forward_batch``'s.
    """
    L = layers.shape[0]
    n_out = layers[L - 1, ZCOLS]
    O = matrix(ws, layers[L - 1, Z_OFF] * cap, m, n_out)
    dO = matrix(ws, layers[L - 1, DZ_OFF] * cap, m, n_out)
    data = call(output_loss, (out_code, O, Yb, yb, swb, scale, dO, dO))
    dZ = dO
    for l in range(L - 1, -1, -1):
        zc = layers[l, ZCOLS]
        W = matrix(theta, layers[l, W_OFF], layers[l, FAN_IN], zc)
        dW = matrix(grad, layers[l, W_OFF], layers[l, FAN_IN], zc)
        db = vector(grad, layers[l, B_OFF], zc)
        if l == 0:  # the input needs no gradient
            call(input_grads, (Xb, S, order, first, W, dZ, dW, db))
        else:
            Hprev = matrix(ws, layers[l - 1, H_OFF] * cap, m, layers[l - 1, UNITS])
            dHprev = matrix(ws, layers[l - 1, DH_OFF] * cap, m, layers[l - 1, UNITS])
            call(dense_grads, (Hprev, W, dZ, dW, db, dHprev))
            # through the previous layer's activation: dZ of layer l - 1
            p = l - 1
            pzc = layers[p, ZCOLS]
            units = layers[p, UNITS]
            dZp = matrix(ws, layers[p, DZ_OFF] * cap, m, pzc)
            H = matrix(ws, layers[p, H_OFF] * cap, m, units)
            if drop is not None:
                _drop_backward(drop, p, dHprev, H, code)
            if iws is not None:  # maxout
                A = matrix(iws, layers[p, ARG_OFF] * cap, m, units)
                call(maxout_backward, (dHprev, A, pieces, dZp))
            else:
                Z = matrix(ws, layers[p, Z_OFF] * cap, m, pzc)
                a_off = layers[p, A_OFF]
                if code == PRELU:
                    call(prelu_slope_grad, (dHprev, Z, vector(grad, a_off, units)))
                slopes = vector(theta, max(a_off, 0), units)  # (read by prelu only)
                call(act_backward, (dHprev, Z, H, code, param, slopes, dZp))
            dZ = dZp
    return data


def _rows_forward_backward(X, S, Y, y, sw, order, start, lo, hi, Xb, Yb, yb, swb, theta, grad,
                           layers, code, param, pieces, out_code, scale, ws, iws, cap, drop):
    """Forward and backward pass of rows lo:hi of the block that starts at row ``start``.

    With an ``order`` (an epoch), the block's rows are order[start + lo:start + hi],
    gathered first into Xb/Yb/yb/swb[lo:hi]; with ``order`` None (full batch) they
    are X[start + lo:start + hi] as they lie (numba compiles only the branch each
    caller takes).  A sparse X comes as S = (data, indices, indptr) of a CSR
    matrix, with X and Xb None: its rows are not gathered, the first layer
    multiplies them where they lie (``dense.csr_matmul`` / ``csr_grads``).
    Uses the workspace (ws, iws), writes grad = scale * sum_i w_i dl_i/dtheta
    and returns sum_i w_i l_i.  drop: None, or the epoch's dropout arguments
    (rows, thresholds, scales, key) with ``rows`` (n,) the data row of each entry
    of ``order``: the block's rows[start + lo:start + hi] key its masks, so a
    row's mask does not depend on its batch or on the split.
    """
    m = hi - lo
    first = start + lo
    Xt = Xb  # (None with a sparse X)
    if order is not None:
        for i in range(lo, hi):
            r = order[start + i]
            if X is not None:
                for j in range(X.shape[1]):
                    Xb[i, j] = X[r, j]
            if Y is not None:
                for j in range(Y.shape[1]):
                    Yb[i, j] = Y[r, j]
            if y is not None:
                yb[i] = y[r]
            if sw is not None:
                swb[i] = sw[r]
        if X is not None:
            Xt = Xb[lo:hi]
        Yt = Yb[lo:hi] if Yb is not None else Yb
        yt = yb[lo:hi] if yb is not None else yb
        swt = swb[lo:hi] if swb is not None else swb
    else:
        if X is not None:
            Xt = X[first:first + m]
        Yt = Y[first:first + m] if Y is not None else Y
        yt = y[first:first + m] if y is not None else y
        swt = sw[first:first + m] if sw is not None else sw
    block = drop  # (None stays None; a slice of rows has the type of rows)
    if drop is not None:
        gid, thr, fl, key = drop
        block = (gid[first:first + m], thr, fl, key)
    call(forward_batch, (Xt, S, order, first, m, theta, layers, code, param, pieces, ws, iws,
                         cap, block))
    return backward_batch(Xt, S, order, first, m, Yt, yt, swt, theta, grad, layers, code, param,
                          pieces, out_code, scale, ws, iws, cap, block)


@inline
def _part_of(a, q, parts):
    """Part q of ``parts`` equal consecutive pieces of the 1-D a (None stays None)."""
    if a is None:
        return a
    n = a.shape[0] // parts
    return a[q * n:(q + 1) * n]


# the full-batch paths' kernel, and train_epoch's inlined copy (see train_epoch)
rows_forward_backward = _inner(_rows_forward_backward)
_rows_forward_backward_inline = inline(_rows_forward_backward)


@inline
def batch_scale(sw, order, start, m, alpha):
    """(scale, lam) of the block of m rows at ``start`` (through ``order`` when given):
    1 / its weight sum W and alpha / W.

    The batch loss is sum_i w_i l_i / W + alpha / (2 W) * sum of squared
    weights, exactly scikit-learn's objective (W = m without weights).  A
    batch whose rows all weigh 0 (possible with class_weight) contributes
    nothing.
    """
    if sw is not None:
        wsum = 0.0
        for i in range(m):
            wsum += sw[order[start + i]] if order is not None else sw[start + i]
    else:
        wsum = float(m)
    scale = 1.0 / wsum if wsum > 0 else 0.0
    return scale, alpha * scale


@inline
def _add_into(g, other):
    """g += other (same length)."""
    for j in range(g.shape[0]):
        g[j] += other[j]


@inline
def _l2_into(g, last, w, lam, parts):
    """g += last (when parts > 1) + lam * w; returns sum(w^2).  (Zero-based loops over
    slices: with an offset of unknown sign numba checks every index for wraparound,
    and the loop no longer vectorises: 5x slower here.)"""
    sq = 0.0
    if parts > 1:
        for j in range(g.shape[0]):
            x = w[j]
            sq += x * x
            g[j] += last[j] + lam * x
    else:
        for j in range(g.shape[0]):
            x = w[j]
            sq += x * x
            g[j] += lam * x
    return sq


@inline
def finish_gradient(theta, grad, parts, layers, lam, lo, hi):
    """On the parameters lo:hi: grad[:P] = the sum of the ``parts`` parts' gradients
    (grad[q * P:(q + 1) * P], q = 0 .. parts - 1, added in that order) and, on the
    weights only (not biases or prelu slopes), + lam * w.  Returns sum(w^2) over the
    weights in lo:hi.

    Parts 1 .. parts - 2 are added in passes of their own; the last part's pass
    also does the L2 term and the squared norm that the loss reports.  Every
    element's sum is the same whichever thread does which range lo:hi, so the
    model does not depend on the thread count.
    """
    P = theta.shape[0]
    g = grad[:P]
    for q in range(1, parts - 1):
        _add_into(g[lo:hi], grad[q * P + lo:q * P + hi])
    last = grad[(parts - 1) * P:parts * P]
    sq = 0.0
    done = lo  # entries before this are finished
    for l in range(layers.shape[0]):
        w_off = layers[l, W_OFF]
        off = max(lo, w_off)
        end = min(hi, w_off + layers[l, FAN_IN] * layers[l, ZCOLS])
        if end <= off:
            continue  # this layer's weights lie outside lo:hi
        if parts > 1:
            _add_into(g[done:off], last[done:off])
        sq += _l2_into(g[off:end], last[off:end], theta[off:end], lam, parts)
        done = end
    if parts > 1:
        _add_into(g[done:hi], last[done:hi])
    return sq


@_kernel
def loss_grad_batch(Xb, Yb, yb, swb, theta, grad, layers, code, param, pieces, out_code,
                    alpha, ws, iws, cap):
    """Loss and full gradient (into ``grad``) of one batch; the loss as a float64."""
    m = Xb.shape[0]
    scale, lam = batch_scale(swb, None, 0, m, alpha)
    data = call(rows_forward_backward, (Xb, None, Yb, yb, swb, None, 0, 0, m, Xb, Yb, yb, swb,
                                        theta, grad, layers, code, param, pieces, out_code,
                                        scale, ws, iws, cap, None))
    sq = finish_gradient(theta, grad, 1, layers, lam, 0, theta.shape[0])
    return data * scale + 0.5 * lam * sq


@inline
def _chunk_sums(X, S, Y, y, sw, lo, hi, theta, grad, gbuf, layers, code, param, pieces,
                out_code, ws, iws, cap, drop):
    """The unnormalised sums of rows lo:hi of X (or of the CSR rows of S), in chunks of
    ``cap`` rows, into ``grad``; returns sum_i w_i l_i.  A chunk's gradient goes to
    ``gbuf`` and is added to ``grad``, the chunks in order (a single chunk is written
    to ``grad`` directly)."""
    single = hi - lo <= cap
    g = grad if single else gbuf
    if not single:
        grad[:] = 0.0
    total = 0.0
    for start in range(lo, hi, cap):
        m = min(cap, hi - start)
        total += call(rows_forward_backward, (X, S, Y, y, sw, None, start, 0, m, X, Y, y, sw,
                                              theta, g, layers, code, param, pieces, out_code,
                                              1.0, ws, iws, cap, drop))
        if not single:
            for j in range(grad.shape[0]):
                grad[j] += gbuf[j]
    return total


@_kernel
def loss_grad_sum(X, S, Y, y, sw, theta, grad, gbuf, layers, code, param, pieces, out_code,
                  ws, iws, cap, drop, part, threads, parts, sync, red):
    """Unnormalised full-batch sums over all rows of X; with threads > 1, thread
    ``part``'s share of them.

    X: (n, d) dense with S None, or None with S = (data, indices, indptr) of a
    CSR matrix (see ``rows_forward_backward``).  drop: None (lbfgs), or the
    dropout arguments of ``train_epoch`` with ``rows`` (n,) the data row of each
    row of X: the sums of a dask block's share of a step-synchronous minibatch
    under the masks the local epoch draws for those rows.

    grad[:P] = sum_i w_i dl_i/dtheta (no L2 term, no division by the weight sum);
    returns sum_i w_i l_i.  The caller adds the penalty and divides by the weight
    sum, so blocks of rows held in different places (dask workers) can be summed
    first.

    The n rows are cut into ``parts`` consecutive pieces by n alone; part q's sums
    go to grad[q * P:(q + 1) * P] (in chunks of ``cap`` rows: ``_chunk_sums``) and
    the parts are added in their order, each thread adding the parameter slices of
    its parts, as ``train_epoch`` does.  ``threads`` threads run this at once
    (thread ``part`` doing parts part * parts // threads .. (part + 1) * parts //
    threads - 1, each with its own ws, iws and gbuf: ``threads`` of them back to
    back), meeting at barriers; the result does not depend on the thread count.
    Memory: a chunk's workspace per thread, whatever n is.
    """
    n = 0
    if X is not None:
        n = X.shape[0]
    if S is not None:
        n = S[2].shape[0] - 1
    P = theta.shape[0]
    me = part
    q0 = me * parts // threads
    q1 = (me + 1) * parts // threads
    ws_t = ws.shape[0] // threads
    g_t = gbuf.shape[0] // threads
    myws = ws[me * ws_t:(me + 1) * ws_t]
    mygbuf = gbuf[me * g_t:(me + 1) * g_t]
    myiws = _part_of(iws, me, threads)
    for q in range(q0, q1):
        lo = n * q // parts
        hi = n * (q + 1) // parts
        red[q] = _chunk_sums(X, S, Y, y, sw, lo, hi, theta, grad[q * P:(q + 1) * P], mygbuf,
                             layers, code, param, pieces, out_code, myws, myiws, cap, drop)
    if threads > 1 and not call(barrier, (sync, threads)):
        return np.nan
    g = grad[:P]
    for q in range(q0, q1):
        plo = P * q // parts
        phi = P * (q + 1) // parts
        for r in range(1, parts):
            _add_into(g[plo:phi], grad[r * P + plo:r * P + phi])
    if threads > 1 and not call(barrier, (sync, threads)):
        return np.nan
    total = 0.0
    for q in range(parts):
        total += red[q]
    return total


@_kernel
def train_epoch(X, S, Y, y, sw, order, theta, grad, layers, code, param, pieces, out_code, alpha,
                velocity, moment1, moment2, hyper, ws, iws, cap, Xb, Yb, yb, swb, drop, part,
                threads, parts, sync, red):
    """One epoch of minibatch training, entirely compiled; with threads > 1, thread
    ``part``'s share of a split epoch.

    Visits the rows of X in the given ``order`` in batches of ``cap`` rows
    (the last one shorter), gathering each batch into the preallocated
    Xb/Yb/yb/swb, computing the loss and gradient, and updating ``theta`` in
    place with SGD (``velocity`` given, the moments None) or Adam (its first and
    second moments moment1, moment2 given, velocity None; hyper[ADAM_T] counts
    steps).
    X (n, d) dense, or None with S = (data, indices, indptr) of a CSR matrix
    (no gather: see ``rows_forward_backward``; Xb None too).
    Y (n, k) float targets for the logistic/identity/exp outputs, y (n,)
    integer labels for softmax (the unused one None); sw per-row weights or
    None; iws None unless the activation is maxout (what is None is not
    compiled: see the module docstring).  Returns sum over batches of
    batch_loss * batch_rows, as scikit-learn accumulates it.  A batch whose
    loss overflows (inf) or is NaN does not stop the epoch: as in scikit-learn
    the steps go on (finite gradients still move the weights) and the total
    is inf or NaN; the training loop decides (``_solvers.fit_stochastic``).

    Parts: each batch's rows are cut into ``parts`` pieces of (nearly) equal
    size by the batch alone; each part gathers, runs forward and backward its
    rows with its own workspace (ws, iws: ``parts`` of them back to back) and
    gradient (grad: (parts * n_params,)); a part's workspace holds
    ceil(cap / parts) rows.  Then the parameter vector is cut
    into ``parts`` slices, and each slice gets the sum of the parts' gradients
    (added in part order: ``finish_gradient``), the L2 term and the step.
    ``red`` (2 * parts float64) carries the parts' loss and sum(w^2) shares,
    added in one order.  ``threads`` threads run this function at once
    (``Trainer``), thread ``part`` (0 .. threads - 1) doing the consecutive
    parts and slices part * parts // threads .. (part + 1) * parts // threads - 1,
    meeting at barriers (``sync.barrier``) after the gradients and after the
    steps; with threads = 1 one thread does every part in turn.  The arithmetic
    and its order depend on ``parts`` only, so the model is bitwise the same
    whatever the thread count.  BLAS runs on one thread either way.  Returns
    the epoch's total (every part), in every thread.  With threads = 1, sync is
    not read.

    drop: None (no dropout: this code is then not compiled), or (rows, thr, fl,
    key): rows (n,) int64 the data row of each entry of ``order``, thr (L,) int64
    each layer's keep threshold (``scalar.DROP_ALL_KEPT``: no dropout there), fl
    (2, L) each layer's 1 / (1 - rate) and 1 - rate in the model's dtype, key the
    epoch's ``scalar.dropout_key``.
    """
    n = order.shape[0]
    P = theta.shape[0]
    ws_part = ws.shape[0] // parts
    rows = (cap + parts - 1) // parts  # the most rows a part has: its workspace's stride
    # this thread's parts (and parameter slices)
    q0 = part * parts // threads
    q1 = (part + 1) * parts // threads
    t = hyper[ADAM_T]
    # scikit-learn reports (and decides tol / "adaptive" on) the squared error averaged
    # over the outputs, while its gradient follows their sum: k_loss divides the data term
    k_loss = float(layers[layers.shape[0] - 1, ZCOLS]) if out_code == OUT_IDENTITY else 1.0
    total = 0.0
    for start in range(0, n, cap):
        m = min(cap, n - start)
        scale, lam = batch_scale(sw, order, start, m, alpha)
        for q in range(q0, q1):
            lo = m * q // parts
            hi = m * (q + 1) // parts
            red[q] = _rows_forward_backward_inline(
                X, S, Y, y, sw, order, start, lo, hi, Xb, Yb, yb, swb, theta,
                grad[q * P:(q + 1) * P], layers, code, param, pieces, out_code, scale,
                ws[q * ws_part:(q + 1) * ws_part], _part_of(iws, q, parts), rows, drop)
        if threads > 1 and not call(barrier, (sync, threads)):
            return np.nan
        data = 0.0  # the parts' sums added in one order, by every thread
        for q in range(parts):
            data += red[q]
        if moment1 is not None:  # Adam
            t += 1.0
        for q in range(q0, q1):
            # the sum of the parts' gradients, the L2 term and the step, on theta[plo:phi]:
            # SGD (velocity given) or Adam (its moments given, step number t)
            plo = P * q // parts
            phi = P * (q + 1) // parts
            red[parts + q] = finish_gradient(theta, grad, parts, layers, lam, plo, phi)
            gp = grad[plo:phi]  # (the sum lies in grad[:P], whichever part this is)
            if velocity is not None:
                call(sgd_step, (theta[plo:phi], gp, velocity[plo:phi], hyper[LR],
                                hyper[MOMENTUM], hyper[NESTEROV] != 0.0))
            if moment1 is not None:
                call(adam_step, (theta[plo:phi], gp, moment1[plo:phi], moment2[plo:phi],
                                 hyper[LR], hyper[BETA1], hyper[BETA2], hyper[EPS], t))
        if threads > 1 and not call(barrier, (sync, threads)):
            return np.nan
        sq = 0.0
        for q in range(parts):
            sq += red[parts + q]
        loss = data * scale / k_loss + 0.5 * lam * sq
        if part == 0:
            hyper[ADAM_T] = t  # steps taken
        total += loss * m
    return total


@njit(cache=True, nogil=True, fastmath={"reassoc"})  # (not FASTMATH: see the docstring)
def all_finite(X):
    """No NaN or inf in the 2-D array X (a fraction of ``np.isfinite(X).all()``'s cost).

    x * 0 is 0 for a finite x and NaN for NaN or inf, so a row is finite when
    the sum of its x * 0 is 0.  Only reassociation is allowed (the sum then
    vectorises); the flags that would let LLVM fold x * 0 to 0 stay off.
    """
    n, d = X.shape
    zero = X.dtype.type(0)
    for i in range(n):
        s = zero
        for j in range(d):
            s += X[i, j] * zero
        if s != zero:
            return False
    return True


@_kernel
def predict_forward(X, theta, layers, code, param, pieces, out_code, apply_out, ws, iws, cap,
                    out, check):
    """Forward pass over any number of rows in chunks of ``cap`` rows.

    Writes the logits (apply_out False) or predictions (apply_out True:
    softmax / sigmoid / identity / exp) into out (n, n_out).  Memory is the
    workspace of one chunk, whatever n is.  With ``check``, X is first
    checked for NaN and inf, and nothing is computed if it has any; returns
    whether X was computed.
    """
    n = X.shape[0]
    # borrowed (see ``views``): the reference counts of the arguments' slices and of their
    # passing to forward_batch took a 1-row forward pass from 0.99 to 1.17 us
    X, theta, layers, ws, out = borrow(X), borrow(theta), borrow(layers), borrow(ws), borrow(out)
    if check and not all_finite(X):
        return False
    for start in range(0, n, cap):
        stop = min(n, start + cap)
        O = call(forward_batch, (X[start:stop], None, None, start, stop - start, theta, layers,
                                 code, param, pieces, ws, iws, cap, None))
        # the logits are the identity output's predictions (a copy; the slice assignment
        # out[...] = O compiled a shape-error message: 2.5 s of predict's 4 s)
        output_activation(out_code if apply_out else OUT_IDENTITY, O, out[start:stop])
    return True


@_kernel
def predict_csr(S, theta, layers, code, param, pieces, out_code, apply_out, ws, iws, cap, out):
    """``predict_forward`` of a CSR matrix S = (data, indices, indptr), n rows, in chunks
    of ``cap`` rows: the first layer multiplies the chunk's CSR rows where they lie
    (``dense.csr_matmul``), no dense copy of them.  Writes out (n, n_out).  (The
    values were checked finite when the matrix was validated.)
    """
    n = S[2].shape[0] - 1
    for start in range(0, n, cap):
        m = min(n, start + cap) - start
        O = call(forward_batch, (None, S, None, start, m, theta, layers, code, param, pieces, ws,
                                 iws, cap, None))
        output_activation(out_code if apply_out else OUT_IDENTITY, O, out[start:start + m])
