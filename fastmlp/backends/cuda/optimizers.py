"""Fused in-place optimizer steps over the flat parameter vector, on NVIDIA GPUs.

The ``@cuda.jit`` twins of ``fastmlp/backends/cpu/optimizers.py``: one
grid-stride loop over the whole flat vector ``theta`` (every weight, bias
and prelu slope), reading ``grad`` and the optimizer state once and writing
them once.  The rules are scikit-learn's.  The step count ``t`` and the
learning rate come from the host as scalars, so the host-side ``hyper``
array stays the one source of truth between epochs.
"""

import math

from numba import cuda

from .. import scalar

# the per-element rules are shared with the CPU backend: fastmlp/backends/scalar.py
sgd_update = cuda.jit(device=True)(scalar.sgd_update)
adam_update = cuda.jit(device=True)(scalar.adam_update)


@cuda.jit
def sgd_step(theta, grad, velocity, lr, momentum, nesterov):
    """SGD with momentum, in place; grid-stride over theta.

    v <- momentum v - lr g;  theta += v               (classical)
    theta += momentum v - lr g  after the v update     (Nesterov)
    """
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        sgd_update(theta, grad, velocity, i, lr, momentum, nesterov)


@cuda.jit
def adam_step(theta, grad, m, v, lr, beta1, beta2, eps, t):
    """Adam, in place, at step t >= 1 (the caller counts steps); grid-stride over theta.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    theta -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    """
    lr_t = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
    c1 = 1.0 - beta1
    c2 = 1.0 - beta2
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        adam_update(theta, grad, m, v, i, lr_t, beta1, c1, beta2, c2, eps)
