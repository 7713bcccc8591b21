"""Output layers fused with their losses, and one-hot, on the CPU.

Every loss kernel reads the logits O (n, k), writes the prediction P and the
gradient w.r.t. the logits dO in one pass, and returns the *weighted sum* of
the per-row losses; the caller divides by the total weight.  Each output is
paired with its canonical loss, so dO = w_i (P - Y) * scale with
``scale = 1 / sum(w)`` chosen by the caller.  ``sw`` is the per-row weight, or
an empty array or None meaning "all ones".  P may be the same array as dO (the
training loop does that); neither may be O.

The kernels use NumPy's error model, which is exact here: every division
(the softmax's 1 / sum of exp, the sigmoid's) has a denominator >= 1, so
Python's zero-division check would be dead code, compiled into every kernel.
"""

from numba import njit, prange

from .calls import CALLEE_MATH, shared_math
from ..._registry import OUT_SOFTMAX
from .. import scalar

# the per-row math is shared with the other backend: fastmlp/backends/scalar.py
pointwise_output = shared_math(scalar.pointwise_output)
softmax_row = shared_math(scalar.softmax_row)
log_softmax_row = shared_math(scalar.log_softmax_row)
sigmoid_bce_row = shared_math(scalar.sigmoid_bce_row)
squared_error_row = shared_math(scalar.squared_error_row)
_softmax_xent_row = shared_math(scalar.softmax_xent_row)

_kernel = njit(nogil=True, cache=True, fastmath=CALLEE_MATH, error_model="numpy")


@shared_math
def softmax_xent_row(O, y, i, g, P, dO):
    """``scalar.softmax_xent_row`` with the label read from y, in the other rows' signature."""
    return _softmax_xent_row(O, i, y[i], g, P, dO)


@shared_math
def weighted_row_losses(row, O, T, sw, scale, P, dO):
    """The one loss driver: sum_i w_i row(O, T, i, w_i * scale, P, dO) over the rows of O.

    ``row`` is one of the row functions above; the driver is inlined into
    each loss kernel below, so each gets its own loop around its own row
    function (and stays cacheable, which a compiled function taking a
    function argument would not be).  ``row`` writes P[i] and dO[i] = g (P[i] - target)
    and returns row i's unweighted loss.  T: the targets, (n,) labels or
    (n, k) floats, as ``row`` reads them.  sw: (n,) weights, or empty or None (all ones).
    """
    total = 0.0
    for i in range(O.shape[0]):
        # (on sw itself, not a flag: with sw None the weighted read is not compiled)
        w = sw[i] if sw is not None and sw.shape[0] > 0 else 1.0
        total += w * row(O, T, i, w * scale, P, dO)
    return total


@_kernel
def softmax_cross_entropy(O, y, sw, scale, P, dO):
    """Stable row softmax fused with cross-entropy against integer labels.

    P = exp(O - max_row) / sum(...);  loss_i = log sum exp(O_i - max) - (O_i,y_i - max)
    dO = w_i (P - onehot(y)) * scale.
    O: (n, k) float, read only unless aliased.  y: (n,) int in [0, k).
    Returns sum_i w_i loss_i as a float64.
    """
    return weighted_row_losses(softmax_xent_row, O, y, sw, scale, P, dO)


@_kernel
def sigmoid_binary_cross_entropy(O, Y, sw, scale, P, dO):
    """Elementwise sigmoid fused with binary cross-entropy summed over outputs.

    loss_i = sum_j max(o, 0) - o y + log1p(exp(-|o|))   (stable for any o)
    P = sigmoid(O);  dO = w_i (P - Y) * scale.
    O, Y, P, dO: (n, k).  Returns sum_i w_i loss_i.
    """
    return weighted_row_losses(sigmoid_bce_row, O, Y, sw, scale, P, dO)


@_kernel
def squared_error(O, Y, sw, scale, P, dO):
    """Identity output with half squared error summed over outputs.

    loss_i = 0.5 sum_j (O_ij - Y_ij)^2;  P = O;  dO = w_i (O - Y) * scale.
    Returns sum_i w_i loss_i.
    """
    return weighted_row_losses(squared_error_row, O, Y, sw, scale, P, dO)


_float_output_row_loss = shared_math(scalar.float_output_row_loss)


@shared_math
def _coded_row(O, T, i, g, P, dO):
    """``scalar.float_output_row_loss`` in ``weighted_row_losses``' row signature,
    T = (Y, code)."""
    Y, code = T
    return _float_output_row_loss(code, O, Y, i, g, P, dO)


@_kernel
def output_loss(out_code, O, Y, y, sw, scale, P, dO):
    """The loss kernel of an output code of ``fastmlp._registry.OUTPUTS`` (the kernels
    above; the training loop compiles this one function, not four).

    y: labels (softmax), Y: float targets (the others, chosen per row by their
    code); the unused one None (its code is then not compiled) or empty.
    """
    if y is not None and out_code == OUT_SOFTMAX:
        return weighted_row_losses(softmax_xent_row, O, y, sw, scale, P, dO)
    if Y is not None:
        return weighted_row_losses(_coded_row, O, (Y, out_code), sw, scale, P, dO)
    return 0.0  # (not reached: the targets of the output are given)


@_kernel
def softmax_rows(O, P):
    """Stable row softmax P = exp(O - max) / sum (P may be O)."""
    for i in range(O.shape[0]):
        softmax_row(O, i, P)


# without reassoc: it could regroup (O - max) - log s as O - (max + log s), which rounds to
# max's ulp (1e-3 in float32 at |max| = 1e4)
@njit(nogil=True, cache=True, fastmath=CALLEE_MATH, error_model="numpy")
def log_softmax_rows(O, out):
    """out = O - max - log sum exp(O - max), row-wise (never log of softmax); out is not O."""
    for i in range(O.shape[0]):
        log_softmax_row(O, i, out)


@_kernel
def output_activation(out_code, O, P):
    """Prediction from logits, in place allowed: softmax, sigmoid, identity or exp."""
    if out_code == OUT_SOFTMAX:
        softmax_rows(O, P)
        return
    n, k = O.shape
    for i in range(n):
        for j in range(k):
            P[i, j] = pointwise_output(out_code, O[i, j])


@njit(nogil=True, cache=True)
def one_hot(labels, out):
    """out[i] = row labels[i] of the identity; out: (n, k) zero-filled here."""
    n, k = out.shape
    for i in range(n):
        for j in range(k):
            out[i, j] = 0
        out[i, labels[i]] = 1


_ROWS_PER_TASK = 256


@njit(nogil=True, cache=True, parallel=True)
def softmax_rows_parallel(O, P):
    """``softmax_rows`` with rows split across numba threads."""
    n = O.shape[0]
    for t in prange((n + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
        lo = t * _ROWS_PER_TASK
        hi = min(n, lo + _ROWS_PER_TASK)
        softmax_rows(O[lo:hi], P[lo:hi])
