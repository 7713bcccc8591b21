"""The optimizer step over the flat parameter vector, on NVIDIA GPUs.

One grid-stride phase over ``theta`` (every weight, bias and prelu slope),
reading ``grad`` and the optimizer state once and writing them once, with
the per-element rules of ``fastmlp/backends/scalar.py`` (scikit-learn's).
Adam's step number arrives per batch from the driver, so the bias
correction is computed on the device and the host's ``hyper`` array stays
the one source of truth between epochs.
"""

import math

from numba import cuda

from .. import scalar
from ..._registry import ADAM, SGD

sgd_update = cuda.jit(device=True)(scalar.sgd_update)
adam_update = cuda.jit(device=True)(scalar.adam_update)

# the "solver" that L-BFGS's full-batch sums use: state1 += grad, theta untouched
SUM_GRAD = -1


@cuda.jit(device=True)
def step_phase(solver, theta, grad, state1, state2, lr, momentum, nesterov, beta1, beta2,
               eps, t, g, stride):
    """Update theta in place from grad: SGD (state1 = velocity) or Adam at step t >= 1
    (state1, state2 = moments); ``SUM_GRAD`` adds grad into state1 instead.

    SGD: v <- momentum v - lr g; theta += v, or momentum v - lr g (Nesterov).
    Adam: m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
    theta -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps).
    """
    P = theta.shape[0]
    if solver == SGD:
        for i in range(g, P, stride):
            sgd_update(theta, grad, state1, i, lr, momentum, nesterov)
    elif solver == ADAM:
        lr_t = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        c1 = 1.0 - beta1
        c2 = 1.0 - beta2
        for i in range(g, P, stride):
            adam_update(theta, grad, state1, state2, i, lr_t, beta1, c1, beta2, c2, eps)
    elif solver == SUM_GRAD:
        for i in range(g, P, stride):
            state1[i] += grad[i]
