"""Hidden-layer activations and their derivatives on the CPU.

Each kernel works on 2-D C-contiguous arrays of one float dtype (float32 or
float64) and writes into an output the caller owns; nothing allocates.  The
scalar functions ``act`` and ``act_grad`` switch on the integer codes of
``fastmlp._registry.ACTIVATIONS``; the derivative of each activation is
written right below its value, from what the forward pass cached:

=========== =========================== ==================== =======
name        act(z)                      act'(z)              reads
=========== =========================== ==================== =======
identity    z                           1                    -
logistic    1 / (1 + e^-z), stable      h (1 - h)            H
tanh        tanh z                      1 - h^2              H
relu        max(0, z)                   [h > 0]              H
leaky_relu  z if z > 0 else s z         1 if h > 0 else s    H
prelu       z if z > 0 else a_j z       1 if z > 0 else a_j  Z
elu         z if z > 0 else a(e^z - 1)  1 if h > 0 else h+a  H
maxout      max_p Z[:, j k + p]         1 at the argmax      argmax
=========== =========================== ==================== =======

(``s >= 0`` and ``a > 0`` are enforced by the estimators, which is what makes
``h > 0`` equivalent to ``z > 0`` for leaky_relu and elu.)

The serial kernels are what the compiled training epoch calls (BLAS owns the
cores there); the ``*_parallel`` wrappers split rows across numba threads for
large standalone calls from ``fastmlp.ops``.
"""

from numba import njit, prange

from .calls import CALLEE_MATH, shared_math
from ..._registry import LOGISTIC, RELU
from .. import scalar

# the per-element math is shared with the other backend: fastmlp/backends/scalar.py
act = shared_math(scalar.act)
act_grad = shared_math(scalar.act_grad)
maxout_unit = shared_math(scalar.maxout_unit)
maxout_unit_backward = shared_math(scalar.maxout_unit_backward)
# relu's own functions, for its specialised loops (the ones act and act_grad call)
relu = shared_math(scalar.relu)
relu_grad = shared_math(scalar.relu_grad)
logistic_backward = shared_math(scalar.logistic_backward)


@shared_math
def _same_buffer(A, B):
    """True when A and B are the same memory seen with the same shape."""
    return A.ctypes.data == B.ctypes.data and A.shape == B.shape


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH, error_model="numpy")
def bias_act_forward(Z, b, code, param, slopes, H):
    """Fused epilogue of a dense layer: Z += b (in place), H = act(Z).

    Z: (n, m) pre-activation without bias, overwritten with Z + b.
    b: (m,).  slopes: (m,) prelu slopes (ignored by other codes).
    H: (n, m) output; may be the same array as Z for activations whose
    derivative reads H (everything but prelu), which then costs no memory.

    relu in place (H is Z: the training loop's case) has a loop of its own,
    calling relu itself and with one store per element, so it vectorises;
    everything else shares one loop (transcendental activations do not
    vectorise anyway, and each extra loop costs compile time).  NumPy's error
    model is exact here: the only division (the sigmoid's) has a denominator
    >= 1.
    """
    n, m = Z.shape
    if code == RELU and _same_buffer(Z, H):
        for i in range(n):
            for j in range(m):
                Z[i, j] = relu(Z[i, j] + b[j])
        return
    for i in range(n):
        for j in range(m):
            z = Z[i, j] + b[j]
            Z[i, j] = z
            H[i, j] = act(code, z, param, slopes[j])


# elementwise, nothing to vectorise by reassociating, and it could regroup the logistic
# product below (scikit-learn's order, kept for a float64 fit to match its rounding)
@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
def act_backward(dH, Z, H, code, param, slopes, dZ):
    """dZ = dH * act'(Z) elementwise, from the cache (H, or Z for prelu).

    All (n, m).  dZ may be the same array as dH.  relu in place (dZ is dH)
    has a loop of its own, as in ``bias_act_forward``; logistic multiplies in
    scikit-learn's order, (dH * h) * (1 - h) (``scalar.logistic_backward``).
    """
    n, m = dH.shape
    if code == RELU and _same_buffer(dH, dZ):
        for i in range(n):
            for j in range(m):
                dH[i, j] = dH[i, j] * relu_grad(H[i, j])
        return
    if code == LOGISTIC:
        for i in range(n):
            for j in range(m):
                dZ[i, j] = logistic_backward(dH[i, j], H[i, j])
        return
    for i in range(n):
        for j in range(m):
            dZ[i, j] = dH[i, j] * act_grad(code, Z[i, j], H[i, j], param, slopes[j])


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
def prelu_slope_grad(dH, Z, out):
    """out[j] = sum_i dH[i, j] * Z[i, j] over the rows where Z[i, j] <= 0.

    The gradient of the loss w.r.t. prelu slope a_j (``dense.hidden_backward``
    calls it before dZ overwrites dH).  dH, Z: (n, m); out: (m,).
    """
    n, m = dH.shape
    for j in range(m):
        out[j] = 0.0
    for i in range(n):
        for j in range(m):
            z = Z[i, j]
            if z <= 0:
                out[j] += dH[i, j] * z


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
def maxout_forward(Z, b, pieces, H, argmax):
    """Maxout epilogue: Z += b, H[i, u] = max_p Z[i, u*pieces + p], caching the winner.

    Z: (n, units * pieces), b: (units * pieces,), H: (n, units),
    argmax: (n, units) integer, the winning piece p of each unit (first on ties).
    """
    n, units = H.shape
    for i in range(n):
        for u in range(units):
            maxout_unit(Z, b, i, u, pieces, H, argmax)


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
def maxout_backward(dH, argmax, pieces, dZ):
    """Route dH to the winning piece: dZ[i, u*pieces + argmax[i, u]] = dH[i, u], 0 elsewhere.

    dH, argmax: (n, units); dZ: (n, units * pieces).
    """
    n, units = dH.shape
    for i in range(n):
        for u in range(units):
            maxout_unit_backward(dH, argmax, i, u, pieces, dZ)


# --- row-parallel wrappers for large standalone calls (fastmlp.ops) ----------

_ROWS_PER_TASK = 256


@njit(nogil=True, cache=True, parallel=True)
def bias_act_forward_parallel(Z, b, code, param, slopes, H):
    """``bias_act_forward`` with rows split across numba threads."""
    n = Z.shape[0]
    for t in prange((n + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
        lo = t * _ROWS_PER_TASK
        hi = min(n, lo + _ROWS_PER_TASK)
        bias_act_forward(Z[lo:hi], b, code, param, slopes, H[lo:hi])


@njit(nogil=True, cache=True, parallel=True)
def maxout_forward_parallel(Z, b, pieces, H, argmax):
    """``maxout_forward`` with rows split across numba threads."""
    n = Z.shape[0]
    for t in prange((n + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
        lo = t * _ROWS_PER_TASK
        hi = min(n, lo + _ROWS_PER_TASK)
        maxout_forward(Z[lo:hi], b, pieces, H[lo:hi], argmax[lo:hi])


# --- dropout (masks from ``scalar.dropout_bits``, never stored) --------------

dropout_row_key = njit(inline="always")(scalar.dropout_row_key)
dropout_bits = njit(inline="always")(scalar.dropout_bits)


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
def dropout_forward(H, rows, key, layer, threshold, scale):
    """Inverted dropout of a hidden layer's output, in place: H[i, j] *= scale where
    unit j of data row rows[i] is kept, else 0 (``scalar.dropout_bits`` < threshold).

    H: (n, m) the activation (after ``bias_act_forward`` / ``maxout_forward``);
    rows: (n,) int64 indices of the batch's rows in the training data (not their
    places in the batch); scale = 1 / (1 - rate) in H's dtype.
    """
    n, m = H.shape
    zero = H.dtype.type(0)
    for i in range(n):
        rk = dropout_row_key(key, layer, rows[i])
        for j in range(m):  # (one store, a select: the loop vectorises)
            h = H[i, j]
            H[i, j] = h * scale if dropout_bits(rk, j) < threshold else zero


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
def dropout_backward(dH, H, code, rows, key, layer, threshold, scale, keep):
    """Back through ``dropout_forward``, in place, before the activation's own backward:
    dH[i, j] *= scale where kept, else 0; and H[i, j] *= keep (= 1 - rate) where kept,
    so that act' reads (to rounding) the activation itself, not its dropped copy.

    dH, H: (n, m); code: the activation; the other arguments as
    ``dropout_forward``'s.  H is no longer needed as the next layer's input once its
    weight gradient is computed.  relu has a loop of its own, without the hash:
    relu' is 0 wherever the dropped output is 0 (dropped or z <= 0) and 1 elsewhere,
    so dH * scale where H != 0 (0 elsewhere) and H as it is give relu's backward the
    same dZ (about half of dropout's cost in a relu fit).
    """
    n, m = dH.shape
    zero = dH.dtype.type(0)
    if code == RELU:
        for i in range(n):
            for j in range(m):
                d = dH[i, j]
                dH[i, j] = d * scale if H[i, j] != zero else zero
        return
    for i in range(n):
        rk = dropout_row_key(key, layer, rows[i])
        for j in range(m):  # (stores of selects, not branches: the loop vectorises)
            kept = dropout_bits(rk, j) < threshold
            d = dH[i, j]
            h = H[i, j]
            dH[i, j] = d * scale if kept else zero
            H[i, j] = h * keep if kept else h
