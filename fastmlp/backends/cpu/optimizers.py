"""Fused in-place optimizer steps over the flat parameter vector.

All parameters of a network (weights, biases, prelu slopes) live in one
contiguous 1-D array ``theta``; its gradient ``grad`` and the optimizer state
have the same shape, so one loop updates everything.  The rules are
scikit-learn's (``sklearn.neural_network._stochastic_optimizers``).
"""

import math

from numba import njit

from .calls import CALLEE_MATH, shared_math
from .. import scalar

# The steps are called by the training kernels, so they are compiled without fast-math
# flags (``calls.CALLEE_MATH``).  They are elementwise (no reduction to vectorise), and
# "reassoc" would let LLVM regroup theta + (momentum v - lr g) or c2 (g g), which rounds
# differently from scikit-learn's update (a float64 fit would drift).

# the per-element rules are shared with the CUDA backend: fastmlp/backends/scalar.py
sgd_update = shared_math(scalar.sgd_update)
adam_update = njit(inline="always", fastmath=CALLEE_MATH, error_model="numpy")(scalar.adam_update)


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
def sgd_step(theta, grad, velocity, lr, momentum, nesterov):
    """SGD with momentum, in place.

    v <- momentum v - lr g;  theta += v               (classical)
    theta += momentum v - lr g  after the v update     (Nesterov)
    """
    for i in range(theta.shape[0]):
        sgd_update(theta, grad, velocity, i, lr, momentum, nesterov)


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH, error_model="numpy")
def _adam_update(theta, grad, m, v, lr_t, beta1, beta2, eps):
    """The elementwise body of ``adam_step``, for eps > 0 (in theta's dtype) only.

    Compiled with NumPy's error model: the denominator sqrt(v) + eps can then
    never be exactly zero, so no division-by-zero check is needed, and
    without that check LLVM vectorises the loop (about 7x faster).  The
    scalars are cast to the parameters' dtype first, so float32 parameters
    are updated in float32 arithmetic (twice the SIMD width of float64, and
    no conversions); float64 parameters get exactly the checked loop's math.
    """
    T = theta.dtype.type
    b1 = T(beta1)
    b2 = T(beta2)
    c1 = T(1.0 - beta1)
    c2 = T(1.0 - beta2)
    lr = T(lr_t)
    e = T(eps)
    for i in range(theta.shape[0]):
        adam_update(theta, grad, m, v, i, lr, b1, c1, b2, c2, e)


@njit(nogil=True, cache=True, fastmath=CALLEE_MATH)
def adam_step(theta, grad, m, v, lr, beta1, beta2, eps, t):
    """Adam, in place, at step t >= 1 (the caller counts steps); eps > 0 (the
    estimators check it).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    theta -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    """
    lr_t = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
    if theta.dtype.type(eps) > 0:  # (eps must stay > 0 in the parameters' dtype)
        _adam_update(theta, grad, m, v, lr_t, beta1, beta2, eps)
        return
    # eps below the dtype's tiniest (0 there: 0 / 0 where v is 0): the same rule with
    # float64 scalars, whose denominator sqrt(v) + eps stays > 0
    c1 = 1.0 - beta1
    c2 = 1.0 - beta2
    for i in range(theta.shape[0]):
        adam_update(theta, grad, m, v, i, lr_t, beta1, c1, beta2, c2, eps)
