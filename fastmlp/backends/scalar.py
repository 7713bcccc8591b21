"""The per-element and per-row math, written once for both backends.

These are plain Python functions.  ``cpu/activations.py`` and ``cpu/losses.py``
compile them with ``njit(inline="always")``, ``cuda/activations.py`` and
``cuda/losses.py`` with ``cuda.jit(device=True)``, so the CPU and GPU kernels
cannot drift apart.

Shared helpers that the functions here call (``sigmoid``, ``relu``, ``relu_grad``,
``softmax_row``, the row losses that ``output_row_loss`` picks from,
``float_output_row_loss``)
are registered with ``numba.extending.register_jitable``: a compiled caller
on either target (CPU ``njit`` or a CUDA device function) compiles them for
itself, and under numba's CUDA simulator they are plain Python calls.  So the
stable sigmoid and the row max / sum-exp reduction are each spelled once.

Codes are named in ``fastmlp._registry`` (activations: ``ACTIVATIONS``,
outputs: ``OUTPUTS``); ``param`` is the leaky_relu slope or the elu alpha,
``slope`` the unit's prelu slope.  An elementwise activation is one branch in
``act`` and one in ``act_grad`` (and its row in the registry).

Constants are written ``of(x, 1.0)``: 1.0 in x's type.  A bare Python float is a
float64 in numba, and one float64 operand turns a float32 expression into float64
arithmetic (two conversions and a float64 operation, at 1/2 to 1/64 of the float32
rate on a GPU); ``benchmarks/gpu_check.py --ptx-report`` and ``tests/test_ptx.py``
find any that remain in the float32 CUDA kernels.  For float64 data ``of`` is the
identity, so the float64 kernels compute exactly what they did before.
"""

import math

import numpy as np
from numba.extending import overload, register_jitable

from .._registry import ELU, LEAKY_RELU, LOGISTIC, PRELU, RELU, TANH
from .._registry import OUT_EXP, OUT_IDENTITY, OUT_LOGISTIC, OUT_SOFTMAX


@register_jitable
def of(x, v):
    """v in the type of the scalar x (float32 or float64): a constant that keeps float32
    math in float32."""
    return type(x)(v)


@register_jitable
def sigmoid(z):
    """1 / (1 + exp(-z)), spelled as scipy's ``expit`` (scikit-learn's logistic), so a
    float64 fit rounds as scikit-learn's does (a / (1 + a) with a = exp(z) differs in
    the last bit for about half of all z < 0).  Below z = -700 it is exp(z) (equal to
    the double's precision there), so exp(-z) never overflows (not even in Python, the
    CUDA simulator's arithmetic)."""
    if z > of(z, -700.0):
        return of(z, 1.0) / (of(z, 1.0) + math.exp(-z))
    return math.exp(z)


def dtype_eps(a):
    """The machine epsilon of the array a's dtype (scikit-learn clips its log-loss there)."""
    return np.finfo(a.dtype).eps


@overload(dtype_eps, target="generic")
def _dtype_eps(a):
    """Compiled (CPU and CUDA): the epsilon is a constant of a's dtype, fixed at typing,
    and of that dtype (a float64 constant would turn float32 comparisons into float64)."""
    eps = float(np.finfo(np.dtype(str(a.dtype))).eps)
    return lambda a: a.dtype.type(eps)


@register_jitable
def relu(z):
    """max(z, 0), NaN passing through (a diverging fit must stay visible)."""
    if z > of(z, 0.0) or z != z:
        return z
    return of(z, 0.0)


@register_jitable
def relu_grad(h):
    """relu'(z) from the cached output h = relu(z): 0 where h == 0, else 1, as scikit-learn
    zeroes its delta (``delta[Z == 0] = 0``), so a NaN h passes dH on as scikit-learn's does."""
    return of(h, 0.0) if h == of(h, 0.0) else of(h, 1.0)


def act(code, z, param, slope):
    """act(z) for one element."""
    if code == RELU:
        return relu(z)
    if code == LOGISTIC:
        return sigmoid(z)
    if code == TANH:
        return math.tanh(z)
    if code == LEAKY_RELU:
        return z if z > of(z, 0.0) else param * z
    if code == PRELU:
        return z if z > of(z, 0.0) else slope * z
    if code == ELU:
        return z if z > of(z, 0.0) else param * math.expm1(z)
    return z  # identity


@register_jitable
def logistic_backward(dh, h):
    """dh * logistic'(z) from h = logistic(z), multiplied in scikit-learn's order:
    ``inplace_logistic_derivative`` does delta *= h, then delta *= 1 - h, which rounds
    differently from dh * (h * (1 - h)) (a float64 fit then drifts from scikit-learn's)."""
    return (dh * h) * (of(h, 1.0) - h)


def act_grad(code, z, h, param, slope):
    """act'(z) for one element, from the cached output h (z for prelu)."""
    if code == RELU:
        return relu_grad(h)
    one = of(h, 1.0)
    if code == LOGISTIC:
        return h * (one - h)
    if code == TANH:
        return one - h * h
    if code == LEAKY_RELU:
        return one if h > of(h, 0.0) else param
    if code == PRELU:
        return one if z > of(z, 0.0) else slope
    if code == ELU:
        return one if h > of(h, 0.0) else h + param
    return one  # identity


# --- per-row output + loss math -------------------------------------------
# Each writes row i of the prediction P and of the gradient dO = g (P - target)
# and returns the row's (unweighted) loss.  P may be the same array as dO,
# never O.  The kernels of cpu/losses.py and cuda/losses.py loop (or stride)
# over rows and weigh and sum what these return.


@register_jitable
def softmax_row(O, i, P):
    """P[i] = exp(O[i] - max) / sum, stable; returns (max, sum of exp(O[i] - max)).

    The one row reduction: the softmax, its log and the cross-entropy all use it.
    P may be O.
    """
    k = O.shape[1]
    mx = O[i, 0]
    for j in range(1, k):
        if O[i, j] > mx:
            mx = O[i, j]
    s = of(mx, 0.0)
    j = 0
    while j < k:
        e = math.exp(O[i, j] - mx)
        P[i, j] = e
        s += e
        j += 1
        # Never true (exp is not negative, NaN compares false): a second exit, which
        # keeps NVVM from unrolling this loop four times over (four float64 exps in
        # flight cost the persistent CUDA kernel 11 registers; issue 29).  On the CPU,
        # LLVM knows exp's sign and removes it.
        if e < of(e, 0.0):
            break
    for j in range(k):
        P[i, j] /= s  # a division, as scikit-learn's softmax (not times 1 / s)
    return mx, s


@register_jitable
def clipped_log(p, eps):
    """log(p) with p clipped to [eps, 1 - eps], as scikit-learn's log-loss takes it
    (eps: the model dtype's machine epsilon); NaN stays NaN."""
    if p < eps:
        p = eps
    elif p > of(p, 1.0) - eps:
        p = of(p, 1.0) - eps
    return math.log(p)


def log_softmax_row(O, i, out):
    """out[i] = O[i] - max - log sum exp(O[i] - max), never log of a softmax; out is not O."""
    mx, s = softmax_row(O, i, out)
    # (O - max) - log s, not O - (max + log s): max + log s rounds to max's ulp, which in
    # float32 at |max| = 1e4 is 1e-3
    ls = math.log(s)
    for j in range(O.shape[1]):
        out[i, j] = (O[i, j] - mx) - ls


@register_jitable
def softmax_xent_row(O, i, yi, g, P, dO):
    """Softmax + cross-entropy of row i against label yi: -log P[i, yi], with P clipped
    to [eps, 1 - eps] as scikit-learn reports its log-loss (eps of P's dtype); the
    gradient g (P - onehot) is the exact one."""
    softmax_row(O, i, P)
    loss = -clipped_log(P[i, yi], dtype_eps(P))
    for j in range(O.shape[1]):
        dO[i, j] = g * P[i, j]
    dO[i, yi] -= g
    return loss


@register_jitable
def sigmoid_bce_row(O, Y, i, g, P, dO):
    """Sigmoid + binary cross-entropy summed over row i, as scikit-learn reports it:
    sum_j -(y log p + (1 - y) log(1 - p)) with p clipped to [eps, 1 - eps] (eps of P's
    dtype); the gradient g (p - y) is the exact one."""
    row = of(O[i, 0], 0.0)
    one = of(row, 1.0)
    eps = dtype_eps(P)
    for j in range(O.shape[1]):
        o = O[i, j]
        yv = Y[i, j]
        p = sigmoid(o)
        row -= yv * clipped_log(p, eps) + (one - yv) * clipped_log(one - p, eps)
        P[i, j] = p
        dO[i, j] = g * (p - yv)
    return row


@register_jitable
def squared_error_row(O, Y, i, g, P, dO):
    """Identity output, half squared error summed over row i."""
    row = of(O[i, 0], 0.0)
    for j in range(O.shape[1]):
        o = O[i, j]
        r = o - Y[i, j]
        row += r * r
        P[i, j] = o
        dO[i, j] = g * r
    return of(row, 0.5) * row


@register_jitable
def poisson_row(O, Y, i, g, P, dO):
    """Exp output, half Poisson deviance summed over row i, spelled as scikit-learn's:
    y log(y / p) - y + p with p = exp(o) (0 for the log term at y = 0), so an overflowing
    p gives NaN there too (-inf + inf), not a finite loss."""
    row = of(O[i, 0], 0.0)
    for j in range(O.shape[1]):
        o = O[i, j]
        p = math.exp(o)
        yv = Y[i, j]
        t = yv * math.log(yv / p) if yv != of(yv, 0.0) else of(yv, 0.0)  # xlogy(y, y / p)
        row += t - yv + p
        P[i, j] = p
        dO[i, j] = g * (p - yv)
    return row


@register_jitable
def float_output_row_loss(out_code, O, Y, i, g, P, dO):
    """Row i of an output trained on float targets Y (logistic, identity, exp), by
    its row function above."""
    if out_code == OUT_LOGISTIC:
        return sigmoid_bce_row(O, Y, i, g, P, dO)
    if out_code == OUT_IDENTITY:
        return squared_error_row(O, Y, i, g, P, dO)
    return poisson_row(O, Y, i, g, P, dO)  # OUT_EXP


def output_row_loss(out_code, O, Y, y, i, g, P, dO):
    """Row i of the output whose code is out_code (``fastmlp._registry.OUTPUTS``), by its
    row function above: y holds the labels (softmax), Y the float targets (the others)."""
    if out_code == OUT_SOFTMAX:
        return softmax_xent_row(O, i, y[i], g, P, dO)
    return float_output_row_loss(out_code, O, Y, i, g, P, dO)


# --- per-element optimizer updates -----------------------------------------
# Element i of the flat parameter vector, in place; scikit-learn's rules.


def sgd_update(theta, grad, velocity, i, lr, momentum, nesterov):
    """v <- momentum v - lr g; theta += v (classical) or momentum v - lr g (Nesterov)."""
    g = grad[i]
    v = momentum * velocity[i] - lr * g
    velocity[i] = v
    if nesterov:
        theta[i] += momentum * v - lr * g
    else:
        theta[i] += v


def adam_update(theta, grad, m, v, i, lr_t, beta1, c1, beta2, c2, eps):
    """m <- b1 m + c1 g; v <- b2 v + c2 g^2; theta -= lr_t m / (sqrt(v) + eps)
    (c1 = 1 - b1, c2 = 1 - b2 and the bias-corrected lr_t come from the caller)."""
    g = grad[i]
    mi = beta1 * m[i] + c1 * g
    vi = beta2 * v[i] + c2 * (g * g)  # scikit-learn's (1 - beta_2) * grad**2
    m[i] = mi
    v[i] = vi
    theta[i] -= lr_t * mi / (math.sqrt(vi) + eps)


# --- maxout, one unit at a time ----------------------------------------------


def maxout_unit(Z, b, i, u, pieces, H, argmax):
    """Unit u of row i: Z[i, u*pieces:(u+1)*pieces] += b there; H[i, u] = their max,
    argmax[i, u] = the winning piece (the first on ties)."""
    base = u * pieces
    best = Z[i, base] + b[base]
    Z[i, base] = best
    arg = 0
    for p in range(1, pieces):
        z = Z[i, base + p] + b[base + p]
        Z[i, base + p] = z
        if z > best:
            best = z
            arg = p
    H[i, u] = best
    argmax[i, u] = arg


def maxout_unit_backward(dH, argmax, i, u, pieces, dZ):
    """Route dH[i, u] to the winning piece of unit u; the other pieces get 0.  (The
    winner as an integer: the CUDA kernels keep argmax in their float workspace, and a
    float32 winner would be compared with p through float64.)"""
    base = u * pieces
    win = int(argmax[i, u])
    for p in range(pieces):
        dZ[i, base + p] = dH[i, u] if p == win else of(dH[i, u], 0.0)


# --- pointwise outputs --------------------------------------------------------


def pointwise_output(out_code, o):
    """The prediction of one logit: sigmoid (OUT_LOGISTIC), exp (OUT_EXP) or o itself."""
    if out_code == OUT_LOGISTIC:
        return sigmoid(o)
    if out_code == OUT_EXP:
        return math.exp(o)
    return o


# --- dropout masks, drawn from a counter-based hash ----------------------------
# A unit's mask is a function of (seed, epoch, row of the data, layer, unit) only, so
# both backends, any thread count and any batch split draw the same masks, and none
# is ever stored.  Arithmetic is on 32-bit values held in int64 (every product below
# 2^63), so the CPU, the GPU and the CUDA simulator (Python integers) agree without
# unsigned types (numba turns int64-uint64 mixes into float64).

M32 = 0xFFFFFFFF  # 2^32 - 1: the hash's values are in [0, 2^32)
DROP_ALL_KEPT = 1 << 32  # a keep threshold that keeps every unit (no dropout there)
_WEYL = 0x9E3779B9  # 2^32 / golden ratio: spreads consecutive units over [0, 2^32)


@register_jitable
def mix32(x):
    """A bijective 32-bit integer finaliser (Wellons' lowbias32, hash-prospector's
    [16 21f0aaad 15 735a2d97 15], bias ~0.11): x in [0, 2^32) -> [0, 2^32).
    Both multipliers are below 2^31, so every product fits an int64."""
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & M32
    x ^= x >> 15
    x = (x * 0x735A2D97) & M32
    x ^= x >> 15
    return x


@register_jitable
def dropout_key(seed, epoch):
    """The key of one epoch of one fit: seed (from random_state) and the epoch count."""
    return mix32(mix32(seed & M32) ^ (epoch & M32))


@register_jitable
def dropout_row_key(key, layer, row):
    """The key of one row (its index in the training data) at one hidden layer."""
    return mix32(mix32((key + layer) & M32) ^ (row & M32))


@register_jitable
def dropout_bits(row_key, unit):
    """32 uniform bits for one unit of one row: the unit is kept when they are below
    the layer's threshold round((1 - rate) 2^32)."""
    return mix32((row_key + unit * _WEYL) & M32)


@register_jitable
def dropout_keep(key, layer, row, unit, threshold):
    """Whether unit ``unit`` of hidden layer ``layer`` is kept for data row ``row``."""
    return dropout_bits(dropout_row_key(key, layer, row), unit) < threshold
