"""Hidden-layer activations and their derivatives on NVIDIA GPUs.

The ``@cuda.jit`` twins of ``fastmlp/backends/cpu/activations.py``: same
names, same arguments, same math (the table there), on device arrays.

- ``sigmoid_scalar``, ``act``, ``act_grad``: device functions on one element,
  switching on the codes of ``fastmlp._registry.ACTIVATIONS``; the GEMM
  kernels of ``dense.py`` call them in their epilogues.
- ``bias_act_forward``, ``act_backward``, ``maxout_forward``,
  ``maxout_backward``: elementwise kernels with grid-stride loops over the
  flattened (row, column) index, so any launch size covers any array.
- ``prelu_slope_grad``: one thread per column, summing down the rows
  (adjacent threads read adjacent columns: coalesced).

Launch them as ``kernel[blocks, threads](...)``; ``_common.grid_1d`` gives
a geometry.  Nothing allocates.  The ``*_parallel`` names are the same
kernels: on the GPU every kernel is already parallel, and the alias keeps
the two backends' name tables identical.

No fastmath: the CUDA flags would flush denormals and approximate division,
and NaN/inf must propagate so that a diverging fit is detected.
"""

from numba import cuda

from .. import scalar

from ..._registry import ELU as _ELU, IDENTITY as _IDENTITY, LEAKY_RELU as _LEAKY_RELU  # noqa: E402,F401
from ..._registry import LOGISTIC as _LOGISTIC, MAXOUT as _MAXOUT, PRELU as _PRELU  # noqa: E402,F401
from ..._registry import RELU as _RELU, TANH as _TANH  # noqa: E402,F401


# the per-element math is shared with the CPU backend: fastmlp/backends/scalar.py
sigmoid_scalar = cuda.jit(device=True)(scalar.sigmoid)
act = cuda.jit(device=True)(scalar.act)
act_grad = cuda.jit(device=True)(scalar.act_grad)
maxout_unit = cuda.jit(device=True)(scalar.maxout_unit)
maxout_unit_backward = cuda.jit(device=True)(scalar.maxout_unit_backward)


@cuda.jit
def bias_act_forward(Z, b, code, param, slopes, H):
    """Z += b (in place), H = act(Z); grid-stride over the n*m elements.

    Z: (n, m) pre-activation without bias, overwritten with Z + b.
    b: (m,).  slopes: (m,) prelu slopes (any (m,) array for other codes).
    H: (n, m) output; may be Z itself for activations whose derivative reads H.
    """
    n, m = Z.shape
    for t in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = t // m
        j = t - i * m
        z = Z[i, j] + b[j]
        Z[i, j] = z
        H[i, j] = act(code, z, param, slopes[j])


@cuda.jit
def act_backward(dH, Z, H, code, param, slopes, dZ):
    """dZ = dH * act'(Z) elementwise from the cache (H, or Z for prelu); grid-stride.

    All (n, m).  dZ may be dH itself.
    """
    n, m = dH.shape
    for t in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = t // m
        j = t - i * m
        dZ[i, j] = dH[i, j] * act_grad(code, Z[i, j], H[i, j], param, slopes[j])


@cuda.jit
def prelu_slope_grad(dH, Z, out):
    """out[j] = sum_i dH[i, j] * Z[i, j] over the rows where Z[i, j] <= 0.

    The gradient w.r.t. prelu slope a_j.  dH, Z: (n, m); out: (m,).
    One thread per column (grid-stride over columns), rows summed in order.
    """
    n, m = dH.shape
    acc = cuda.local.array(1, dtype=out.dtype)
    for j in range(cuda.grid(1), m, cuda.gridsize(1)):
        acc[0] = 0
        for i in range(n):
            z = Z[i, j]
            if z <= 0:
                acc[0] += dH[i, j] * z
        out[j] = acc[0]


@cuda.jit
def maxout_forward(Z, b, pieces, H, argmax):
    """Z += b; H[i, u] = max_p Z[i, u*pieces + p], the winner cached in argmax.

    Z: (n, units * pieces), b: (units * pieces,), H: (n, units),
    argmax: (n, units) integer (first piece on ties).  Grid-stride over n*units.
    """
    n, units = H.shape
    for t in range(cuda.grid(1), n * units, cuda.gridsize(1)):
        i = t // units
        u = t - i * units
        maxout_unit(Z, b, i, u, pieces, H, argmax)


@cuda.jit
def maxout_backward(dH, argmax, pieces, dZ):
    """dZ[i, u*pieces + argmax[i, u]] = dH[i, u], 0 for the other pieces.

    dH, argmax: (n, units); dZ: (n, units * pieces).  Grid-stride over n*units.
    """
    n, units = dH.shape
    for t in range(cuda.grid(1), n * units, cuda.gridsize(1)):
        i = t // units
        u = t - i * units
        maxout_unit_backward(dH, argmax, i, u, pieces, dZ)


# On the GPU every kernel is row-parallel already; the names mirror the CPU's.
bias_act_forward_parallel = bias_act_forward
act_backward_parallel = act_backward
maxout_forward_parallel = maxout_forward
