"""Hidden-layer activations and their derivatives on NVIDIA GPUs.

The per-element math is ``fastmlp/backends/scalar.py``, compiled here with
``cuda.jit(device=True)`` (``act``, ``act_grad``, ``maxout_unit``,
``maxout_unit_backward``, which takes the argmax stored as floats); the GEMM phases
of ``dense.py`` call ``act`` and ``act_grad`` in their epilogues.  The two
phases below finish the layers whose activation cannot be fused into a GEMM
tile (maxout: a unit's pieces may straddle two tiles; prelu: its slope
gradient is a sum down the rows).  Each takes the calling thread's global
index ``g`` and the grid's thread count ``stride`` and walks a grid-stride
loop, so any grid covers any array.

No fastmath: the CUDA flags would flush denormals and approximate division,
and NaN/inf must propagate so that a diverging fit is detected.
"""

from numba import cuda

from .. import scalar
from ..scalar import DROP_ALL_KEPT, of
from ..._registry import MAXOUT, PRELU
from ._common import d_cells, d_next_cell

act = cuda.jit(device=True)(scalar.act)
act_grad = cuda.jit(device=True)(scalar.act_grad)
maxout_unit = cuda.jit(device=True)(scalar.maxout_unit)
maxout_unit_backward = cuda.jit(device=True)(scalar.maxout_unit_backward)
drop_keep = cuda.jit(device=True)(scalar.dropout_keep)


@cuda.jit(device=True)
def dropout_h(h, drows, dkey, dl, r, u, dthr, dscale):
    """A hidden activation h as it is stored: h * dscale where unit u of batch row r
    (data row drows[r]) of layer dl is kept (``scalar.dropout_keep``), 0 where it is
    dropped; h itself without dropout (dthr == ``scalar.DROP_ALL_KEPT``).  Applied
    wherever a phase writes a hidden layer's output."""
    if dthr < DROP_ALL_KEPT:
        if drop_keep(dkey, dl, drows[r], u, dthr):
            return h * dscale
        return of(h, 0.0)
    return h


@cuda.jit(device=True)
def dropout_dh(dh, h, drows, dkey, dl, r, u, dthr, dscale, dkeep):
    """(dH, H) of unit u of batch row r of layer dl back through ``dropout_h``: (dh *
    dscale, h * dkeep) where kept (h * dkeep: the activation before its scale, for act'),
    (0, h) where dropped; (dh, h) without dropout.  Applied where a phase computes a
    hidden layer's dH, before act'."""
    if dthr < DROP_ALL_KEPT:
        if drop_keep(dkey, dl, drows[r], u, dthr):
            return dh * dscale, h * dkeep
        return of(dh, 0.0), h
    return dh, h


@cuda.jit(device=True)
def maxout_forward_phase(Z, b, pieces, H, argmax, g, stride, drows, dkey, dl, dthr, dscale):
    """Z += b; H[i, u] = max_p Z[i, u*pieces + p], the winner cached in argmax.

    Z: (m, units * pieces) bare GEMM output, b: (units * pieces,), H: (m, units),
    argmax: (m, units), the winning piece stored as a float (the first on ties).
    Grid-stride over m*units.
    Dropout (dthr < ``scalar.DROP_ALL_KEPT``): H[i, u] *= dscale where unit u of data
    row drows[i] of layer dl is kept, else 0 (as ``dense.forward_tiles``).
    """
    n, units = H.shape
    i, u, di, du = d_cells(g, stride, units)
    while i < n:
        maxout_unit(Z, b, i, u, pieces, H, argmax)
        H[i, u] = dropout_h(H[i, u], drows, dkey, dl, i, u, dthr, dscale)
        i, u = d_next_cell(i, u, di, du, units)


@cuda.jit(device=True)
def hidden_backward_phase(code, dH, Z, H, argmax, pieces, param, slopes, dZ, dslopes, g, stride):
    """dZ from dH for the activations the GEMM epilogue cannot fuse.

    maxout (grid-stride over m*units): dZ[i, u*pieces + argmax[i, u]] = dH[i, u],
    0 for the other pieces.  prelu (a thread per unit, down the rows):
    dslopes[u] = sum_i dH[i, u] Z[i, u] over Z <= 0, and dZ = dH * act' in
    place of dH (each element read before the same thread overwrites it).
    """
    n, units = dH.shape
    if code == MAXOUT:
        i, u, di, du = d_cells(g, stride, units)
        while i < n:
            maxout_unit_backward(dH, argmax, i, u, pieces, dZ)
            i, u = d_next_cell(i, u, di, du, units)
    elif code == PRELU:
        u = g
        while u < units:
            a = slopes[u]
            s = of(a, 0.0)
            for i in range(n):
                gh = dH[i, u]
                z = Z[i, u]
                if z <= of(z, 0.0):
                    s += gh * z
                dZ[i, u] = gh * act_grad(code, z, H[i, u], param, a)
            dslopes[u] = s
            u += stride
