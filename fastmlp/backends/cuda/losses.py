"""Output layers fused with their losses, on NVIDIA GPUs.

The per-row math is ``fastmlp/backends/scalar.py`` (the CPU's
``cpu/losses.py`` compiles the same functions), compiled here as device
functions.  Two phases, each over the calling thread's grid-stride rows
(global index ``g``, grid thread count ``stride``):

``loss_phase``    the fused output + loss of training: reads the logits O
    (m, k), writes dO = w_i (P - Y) * scale in one pass and returns the
    thread's sum of w_i l_i.  The drivers reduce those partial sums per block
    in shared memory and add them atomically into one float64 device scalar,
    read once per epoch.
``output_phase``  prediction: P = softmax / sigmoid / identity / exp of O
    (a thread per row for softmax, per element for the pointwise outputs).

One thread per row is the right shape for the class counts an MLP
classifier sees (tens); thousands of classes would want a block per row.
"""

from numba import cuda

from .. import scalar
from ..scalar import of
from ..._registry import OUT_SOFTMAX
from ._common import d_cells, d_next_cell

pointwise_output = cuda.jit(device=True)(scalar.pointwise_output)
softmax_row = cuda.jit(device=True)(scalar.softmax_row)
output_row_loss = cuda.jit(device=True)(scalar.output_row_loss)


@cuda.jit(device=True)
def loss_phase(out_code, O, Y, y, sw, scale, dO, g, stride):
    """Returns sum over this thread's rows i of w_i l_i and writes dO[i] = w_i scale (P_i - Y_i).

    O: (m, k) logits; Y: (m, k) targets (logistic, identity, exp) or y: (m,)
    labels (softmax); sw: (m,) weights or empty (all ones).  The prediction
    is written into dO first and turned into the gradient in place.
    """
    has_w = sw.shape[0] > 0
    part = 0.0  # float64: the loss sum
    i = g
    while i < O.shape[0]:  # (while, not range: see _common.quot)
        w = sw[i] if has_w else of(scale, 1.0)
        gi = w * scale
        part += w * output_row_loss(out_code, O, Y, y, i, gi, dO, dO)
        i += stride
    return part


@cuda.jit(device=True)
def output_phase(out_code, apply_out, O, P, g, stride):
    """P = the prediction of the logits O (apply_out) or O itself; (m, k) each."""
    n, k = O.shape
    if apply_out and out_code == OUT_SOFTMAX:
        i = g
        while i < n:
            softmax_row(O, i, P)
            i += stride
        return
    i, j, di, dj = d_cells(g, stride, k)
    while i < n:
        if apply_out:
            P[i, j] = pointwise_output(out_code, O[i, j])
        else:
            P[i, j] = O[i, j]
        i, j = d_next_cell(i, j, di, dj, k)
