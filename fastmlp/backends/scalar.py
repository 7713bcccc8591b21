"""The per-element math of the activations, written once for both backends.

These are plain Python functions.  ``cpu/activations.py`` compiles them with
``njit(inline="always")`` and ``cuda/activations.py`` with
``cuda.jit(device=True)``, so the CPU and GPU kernels cannot drift apart.
They call nothing but ``math`` (a device function may only call other device
functions, so the sigmoid is spelled out where it is needed).

Codes are those of ``fastmlp._registry.ACTIVATIONS``; ``param`` is the
leaky_relu slope or the elu alpha, ``slope`` the unit's prelu slope.
"""

import math

from .._registry import ELU as _ELU, LEAKY_RELU as _LEAKY_RELU, LOGISTIC as _LOGISTIC
from .._registry import PRELU as _PRELU, RELU as _RELU, TANH as _TANH


def sigmoid(z):
    """1 / (1 + exp(-z)) without overflow for large |z|."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def act(code, z, param, slope):
    """act(z) for one element."""
    if code == _RELU:
        if z > 0 or z != z:  # NaN passes through: a diverging fit must stay visible
            return z
        return 0.0
    if code == _LOGISTIC:
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)
    if code == _TANH:
        return math.tanh(z)
    if code == _LEAKY_RELU:
        return z if z > 0 else param * z
    if code == _PRELU:
        return z if z > 0 else slope * z
    if code == _ELU:
        return z if z > 0 else param * math.expm1(z)
    return z  # identity


def act_grad(code, z, h, param, slope):
    """act'(z) for one element, from the cached output h (z for prelu)."""
    if code == _RELU:
        return 1.0 if h > 0 else 0.0
    if code == _LOGISTIC:
        return h * (1.0 - h)
    if code == _TANH:
        return 1.0 - h * h
    if code == _LEAKY_RELU:
        return 1.0 if h > 0 else param
    if code == _PRELU:
        return 1.0 if z > 0 else slope
    if code == _ELU:
        return 1.0 if h > 0 else h + param
    return 1.0  # identity
