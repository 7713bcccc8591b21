"""The optimizer step over the flat parameter vector, on NVIDIA GPUs.

One grid-stride phase over ``theta`` (every weight, bias and prelu slope),
reading ``grad`` and the optimizer state once and writing them once, with
the per-element rules of ``fastmlp/backends/scalar.py`` (scikit-learn's).
The step size of each batch (lr, or Adam's bias-corrected lr_t) is computed
on the host once per step, in float64 as the CPU's ``adam_step`` does
(``step_sizes``), and read by the kernel from the epoch's ``scales``; the
other hyper-parameters arrive in theta's dtype, so a float32 step is float32
arithmetic only.  The host's ``hyper`` array stays the one source of truth
between epochs.
"""

import math

import numpy as np
from numba import cuda

from .. import scalar
from ..._registry import ADAM, SGD

sgd_update = cuda.jit(device=True)(scalar.sgd_update)
adam_update = cuda.jit(device=True)(scalar.adam_update)

# the "solver" that L-BFGS's full-batch sums use: state1 += grad, theta untouched
SUM_GRAD = -1


def step_sizes(solver, lr, beta1, beta2, t0, n_batches):
    """Host float64 (n_batches,): the step size of each batch of an epoch, lr for SGD and
    Adam's lr sqrt(1 - b2^t) / (1 - b1^t) at its step t = t0 + 1, t0 + 2, ... (computed
    as the CPU's ``adam_step`` computes it, with the same libm pow)."""
    lr, beta1, beta2, t0 = float(lr), float(beta1), float(beta2), float(t0)
    if solver != ADAM:
        return np.full(n_batches, lr)
    out = np.empty(n_batches)
    for b in range(n_batches):
        t = t0 + b + 1.0
        out[b] = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
    return out


@cuda.jit(device=True)
def step_phase(solver, theta, grad, state1, state2, lr, momentum, nesterov, beta1, c1, beta2,
               c2, eps, g, stride):
    """Update theta in place from grad: SGD (state1 = velocity) or Adam (state1, state2 =
    moments) with this step's size ``lr`` (``step_sizes``); ``SUM_GRAD`` adds grad into
    state1 instead.  The scalars are in theta's dtype; c1 = 1 - beta1, c2 = 1 - beta2.

    SGD: v <- momentum v - lr g; theta += v, or momentum v - lr g (Nesterov).
    Adam: m <- b1 m + c1 g; v <- b2 v + c2 g^2; theta -= lr_t m / (sqrt(v) + eps).
    """
    P = theta.shape[0]
    i = g
    while i < P:  # (while, not range: see _common.quot)
        if solver == SGD:
            sgd_update(theta, grad, state1, i, lr, momentum, nesterov)
        elif solver == ADAM:
            adam_update(theta, grad, state1, state2, i, lr, beta1, c1, beta2, c2, eps)
        elif solver == SUM_GRAD:
            state1[i] += grad[i]
        i += stride
