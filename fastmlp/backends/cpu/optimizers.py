"""Fused in-place optimizer steps over the flat parameter vector.

All parameters of a network (weights, biases, prelu slopes) live in one
contiguous 1-D array ``theta``; its gradient ``grad`` and the optimizer state
have the same shape, so one loop updates everything.  The rules are
scikit-learn's (``sklearn.neural_network._stochastic_optimizers``).
"""

import math

from numba import njit

from ..._config import FASTMATH


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def sgd_step(theta, grad, velocity, lr, momentum, nesterov):
    """SGD with momentum, in place.

    v <- momentum v - lr g;  theta += v               (classical)
    theta += momentum v - lr g  after the v update     (Nesterov)
    """
    for i in range(theta.shape[0]):
        g = grad[i]
        v = momentum * velocity[i] - lr * g
        velocity[i] = v
        if nesterov:
            theta[i] += momentum * v - lr * g
        else:
            theta[i] += v


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def adam_step(theta, grad, m, v, lr, beta1, beta2, eps, t):
    """Adam, in place, at step t >= 1 (the caller counts steps).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    theta -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    """
    lr_t = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
    c1 = 1.0 - beta1
    c2 = 1.0 - beta2
    for i in range(theta.shape[0]):
        g = grad[i]
        mi = beta1 * m[i] + c1 * g
        vi = beta2 * v[i] + c2 * g * g
        m[i] = mi
        v[i] = vi
        theta[i] -= lr_t * mi / (math.sqrt(vi) + eps)
