"""The training epoch and the chunked forward pass on NVIDIA GPUs: phases, schedule, drivers.

Work is cut into *phases*; within a phase nothing depends on anything else
of the same phase, so the blocks of a grid share it out (output tiles for
the GEMMs, grid-stride loops for the rest) and a phase needs the previous
one finished.  ``run_phase`` runs one phase of one batch for the calling
block.  A batch of training is the phase list ``schedule(spec, True)``:

    GATHER                       rows order[b cap : b cap + m] into the batch buffers
    FORWARD l (, MAXOUT_FWD l)   per layer: GEMM tiles with bias + act fused
    LOSS                         fused output + loss, dO
    BACKWARD l (, HIDDEN_BWD l-1)  per layer, last first: dW, db (+ L2) and dH(l-1)
                                 tiles (act' fused), then prelu / maxout backward
    STEP                         SGD / Adam over theta

and prediction of a chunk is FORWARD l ..., OUTPUT.  With a CSR matrix X
(``schedule(..., sparse=True)``) the first layer's two phases are
CSR_FORWARD 0 and CSR_BACKWARD 0 (``sparse.py``: they read the batch's rows
through ``order`` and ``indptr`` where they lie on the device), and GATHER
gathers Y, y and sw only: there is no dense batch buffer Xb.  Two drivers
run the same list with the same device functions:

``persistent``  one cooperative kernel (``kernels(T, R)[0]``) runs every
    phase of every batch of the epoch (or of a predict chunk), with
    ``cuda.cg.this_grid().sync()`` between phases.  Its grid is the smaller
    of ``max_cooperative_grid_blocks`` (all blocks resident at once, which
    grid sync needs) and the most blocks any phase can use.  One launch per
    epoch; the epoch loss is summed per thread over all batches, reduced per
    block once and added atomically into one float64 read once.
``launches``    the fallback: one launch of ``kernels(T, R)[1]`` per phase and
    batch from a host loop, each grid sized to its phase.  Used where a
    cooperative launch is impossible (the kernel cannot be resident, or the
    device / driver refuses or cannot link it).

``_config.CUDA_EPOCH_DRIVER`` ("auto" by default) picks: "auto" takes the
persistent kernel and falls back, once and with a warning, when it cannot run.

Buffers: ``theta``/``grad``/optimizer state are the rows of one device array
``params`` (W of layer l at ``layers[l, W_OFF]``, row-major (fan_in, zcols));
the per-row buffers are 2-D device arrays of ``cap`` rows: the float workspace
``ws`` holds the buffer of ``c`` columns at column offset ``o`` of the
``layers`` table as the view ``ws[:m, o:o + c]``, and after the layers'
columns maxout's argmax (as floats) and the gathered batch (Xb, Yb, swb); the
batch's labels are a segment of ``ix``.  Nothing is allocated per batch or per
epoch.  The kernels take eight arrays and no scalar (``META_ROWS``: the
scalars, the layers table and the schedule are read from ``meta``, the head of
``ix``, and from ``fx`` where a phase uses them), so that the persistent kernel
holds little across its loop.
"""

import warnings

import numpy as np
from numba import cuda, float64

from ..._registry import IDENTITY, MAXOUT, OUT_IDENTITY, PRELU
from ..layout import (
    A_OFF, ARG_OFF, B_OFF, DH_OFF, DZ_OFF, FAN_IN, H_OFF, N_COLS, UNITS, W_OFF, Z_OFF, ZCOLS,
)
from ..scalar import DROP_ALL_KEPT, of
from .. import cuda_simulated
from ._common import (
    F_ALPHA, F_B1, F_B2, F_C1, F_C2, F_DFL, F_EPS, F_MOM, F_PARAM, META_COLS, META_ROWS,
    M_APPLY, M_CODE, M_DCOLS, M_DKEY, M_DTHR, M_GID, M_GRAD, M_HASSW, M_HASY, M_HASYL, M_IND,
    M_IP, M_L, M_NB, M_NEST, M_NF, M_NROWS, M_NTAB, M_ORD, M_OUT, M_PIECES, M_S1, M_S2,
    M_SOLVER, M_SWB, M_XB, M_XDIRECT, M_YB, M_YLB, M_YO, M_ZERO, M_ARG,
    EPOCH_MIN_BLOCKS_PER_SM, MAX_BLOCKS, PHASE_MIN_BLOCKS_PER_SM, block_sum_add, d_cells,
    d_next_cell, driver,
    reg_block, tile,
)
from .activations import hidden_backward_phase, maxout_forward_phase
from .dense import gemm_phases
from .losses import loss_phase, output_phase
from .optimizers import SUM_GRAD, step_phase
from .sparse import CSR_GROUPS_MAX, csr_backward_phase, csr_forward_phase

# phase kinds (column 0 of a schedule row; column 1 is the layer)
GATHER, FORWARD, MAXOUT_FWD, LOSS, BACKWARD, HIDDEN_BWD, STEP, OUTPUT, CSR_FORWARD, \
    CSR_BACKWARD = range(10)


def schedule(layers, code, training, sparse=False):
    """The phase list of one batch: int64 (n_phases, 2) rows (kind, layer).  ``sparse``:
    X is a CSR matrix, and layer 0 runs CSR_FORWARD / CSR_BACKWARD (``sparse.py``)."""
    L = layers.shape[0]
    rows = [(GATHER, 0)] if training else []
    for l in range(L):
        rows.append((CSR_FORWARD if sparse and l == 0 else FORWARD, l))
        if code == MAXOUT and l < L - 1:
            rows.append((MAXOUT_FWD, l))
    if not training:
        rows.append((OUTPUT, L - 1))
        return np.array(rows, dtype=np.int64)
    rows.append((LOSS, L - 1))
    for l in range(L - 1, -1, -1):
        rows.append((CSR_BACKWARD if sparse and l == 0 else BACKWARD, l))
        if l > 0 and (code == MAXOUT or code == PRELU):
            rows.append((HIDDEN_BWD, l - 1))
    rows.append((STEP, 0))
    return np.array(rows, dtype=np.int64)


def phase_blocks(layers, table, cap, d, k, n_params, T, R):
    """The number of T x T blocks each phase of ``table`` can keep busy (batches of cap rows;
    d: the columns GATHER copies, 0 for a CSR X)."""
    nt = T * T
    TR = T * R

    def cdiv(a, b):
        return max(1, (int(a) + b - 1) // b)

    out = []
    for kind, l in table:
        r = layers[l]
        fi, zc, units = int(r[FAN_IN]), int(r[ZCOLS]), int(r[UNITS])
        if kind == GATHER:
            n = cdiv(cap * max(d, k), nt)
        elif kind == FORWARD:
            n = cdiv(cap, TR) * cdiv(zc, TR)
        elif kind == CSR_FORWARD:  # a thread per output element
            n = cdiv(cap * zc, nt)
        elif kind == CSR_BACKWARD:  # a thread per (feature group, column): sparse.py
            n = cdiv(zc * min(fi, CSR_GROUPS_MAX), nt)
        elif kind == BACKWARD:
            n = cdiv(fi, T) * cdiv(zc, T) + (cdiv(cap, T) * cdiv(fi, T) if l > 0 else 0)
        elif kind == STEP:
            n = cdiv(n_params, nt)
        elif kind == HIDDEN_BWD or kind == MAXOUT_FWD:
            n = cdiv(cap * units, nt)
        else:  # LOSS, OUTPUT
            n = cdiv(cap * k, nt)
        out.append(n)
    return out


# --- the kernels' packed arguments -------------------------------------------------------
#
# The persistent kernel runs every phase in one loop, so whatever a kernel argument holds
# (an array's pointer and shapes, which numba reads for negative indices; a scalar) is
# live across the whole loop, in registers: with the 41 arguments of the first version
# it needed 200-225 registers a thread (benchmarks/RESULTS.md).  So the kernels take eight
# arrays and nothing else, and a phase reads what it needs from them where it uses it,
# after the grid sync:
#
# ``ix`` int64, flat: first ``meta``, (META_ROWS + L + n_phases) rows of META_COLS: row 0
#     the integer scalars and offsets (the ``M_`` slots of ``_common.py``), rows
#     META_ROWS .. META_ROWS + L - 1 the layers table (``layout``'s columns, and column
#     ``M_DTHR`` the layer's dropout keep threshold, ``scalar.DROP_ALL_KEPT`` without
#     dropout), then the schedule's (kind, layer) rows; meta[r * META_COLS + c] is row r,
#     column c.  Then the epoch's row ``order`` (at M_ORD), the data rows of its entries
#     for dropout (``gid``, at M_GID: the order itself unless a chunk's rows), the labels
#     y (M_YO) and a CSR X's indptr and indices (M_IP, M_IND).
# ``fx`` (theta's dtype) the float hyper-parameters (the ``F_`` slots), the dropout scales
#     fx[F_DFL + l] = 1 / (1 - rate), fx[F_DFL + L + l] = 1 - rate (1 without), and
#     from meta's M_NF on the values of a CSR X (``data``).
# ``D`` (rows, columns) the data's rows as the gather copies them: X (dense), Y, sw side
#     by side (M_DCOLS columns); predict's chunk of X.
# (The GEMM phases of ``dense.py`` read their epilogues' offsets, activation and dropout
# from meta and fx too, where they store, not before their loops.)
# ``scales`` float64 (n_batches, 3) per batch; ``params`` theta, grad and the optimizer
#     states as rows (meta names the rows of grad and the states); ``ws`` the float
#     workspace, whose columns after the layers' hold the batch (Xb, Yb, swb: D's
#     columns, gathered, from M_XB) and before those maxout's argmax (from M_ARG, as
#     floats: small integers, exact); the batch's labels yb are ix's segment at M_YLB;
#     ``P`` predict's output; ``loss_acc``.
# meta's M_ZERO slot holds 0 (see ``run_phase``).


_KERNELS = {}


def kernels(T, R):
    """(persistent epoch kernel, one-phase kernel) for T x T blocks and R x R register blocks."""
    key = (T, R)
    if key in _KERNELS:
        return _KERNELS[key]
    forward_tiles, backward_tiles = gemm_phases(T, R)
    TR = T * R
    T1 = T + 1
    TR1 = TR + 1
    NT = T * T
    LR = META_ROWS  # meta's row of layer 0

    @cuda.jit(device=True)
    def gather(meta, ix, D, start, m, ws, g, stride):
        """Rows order[start : start + m] of D (X where dense, Y, sw: M_DCOLS columns) into
        ws from column M_XB on (Xb, Yb, swb), and of the labels y into ix from M_YLB on."""
        nc = meta[M_DCOLS]
        oo = meta[M_ORD] + start
        xo = meta[M_XB]
        if nc > 0:  # (while, not range: see _common.quot)
            i, j, di, dj = d_cells(g, stride, nc)
            while i < m:
                ws[i, xo + j] = D[ix[oo + i], j]
                i, j = d_next_cell(i, j, di, dj, nc)
        if meta[M_HASYL] != 0:
            yo = meta[M_YO]
            lo = meta[M_YLB]
            i = g
            while i < m:
                ix[lo + i] = ix[yo + ix[oo + i]]
                i += stride

    @cuda.jit(device=True)
    def run_phase(kind, l, b, ix, fx, D, scales, params, ws, P, sA, sB, acc,
                  a_reg, b_reg):
        """Phase ``kind`` (layer l) of batch b for the calling block; returns this
        thread's share of the batch's loss contribution (float64).

        The scalars, offsets, layers and dropout thresholds are read from ``meta``, the
        float hyper-parameters (in theta's dtype, cast once on the host) and the dropout
        scales from ``fx``, here, where a phase uses them (see ``META_ROWS``).
        ``scales`` row b is float64 and cast here, except the loss scale, which only the
        float64 loss sum uses.  So a float32 kernel computes in float32 throughout, but
        for that sum.

        Dropout: the gid entries of ``ix`` (the data row of each entry of the order) key
        the masks with meta's M_DKEY, the epoch's ``scalar.dropout_key``; its M_DTHR
        column holds the keep thresholds (``DROP_ALL_KEPT`` where none: the masks' code
        is skipped, the arithmetic is that of a fit without it).
        """
        meta = ix  # the scalars, layers and schedule: the head of ix (META_ROWS)
        # The block's and thread's indices plus meta's M_ZERO, which is 0: read from memory
        # after the grid sync, it keeps the compiler from computing what derives from them
        # (shared-memory addresses, the tiles' origins) once before the persistent kernel's
        # loop and holding all of it in registers through every phase.  The masks change
        # nothing (the hardware's limits) but tell the compiler the indices are not
        # negative, so numba's negative-index fix-ups of what they index drop out.
        z = meta[M_ZERO]
        first = (cuda.blockIdx.x + z) & 0x7FFFFFFF
        step = (cuda.gridDim.x + z) & 0x7FFFFFFF
        stride = step * NT
        tx = (cuda.threadIdx.x + z) & 1023
        ty = (cuda.threadIdx.y + z) & 1023
        g = first * NT + tx + ty * T
        cap = ws.shape[0]
        start = b * cap
        m = min(cap, meta[M_NROWS] - start)
        L = meta[M_L]
        row = (LR + l) * META_COLS  # layer l's row of meta (flat), then l - 1's and the last's
        prev_row = row - META_COLS
        out_row = (LR + L - 1) * META_COLS
        alpha = fx[F_ALPHA]
        theta = params[0]
        gscale = of(alpha, scales[b, 0])  # gradient scale: 1 / (weight sum of the batch)
        lscale = scales[b, 1]  # loss scale: rows / weight sum (training), 1 (full-batch sums)
        part = 0.0  # float64: the loss sum
        if kind == GATHER:
            gather(meta, ix, D, start, m, ws, g, stride)
        elif kind == STEP:
            # scales[b, 2]: the step size of batch b (lr, or Adam's bias-corrected lr_t)
            step_phase(meta[M_SOLVER], theta, params[meta[M_GRAD]],
                       params[meta[M_S1]], params[meta[M_S2]], of(alpha, scales[b, 2]),
                       fx[F_MOM], meta[M_NEST], fx[F_B1], fx[F_C1], fx[F_B2], fx[F_C2],
                       fx[F_EPS], g, stride)
        elif kind == LOSS:
            out_code = meta[M_OUT]
            k = meta[out_row + ZCOLS]
            zo = meta[out_row + Z_OFF]
            dzo = meta[out_row + DZ_OFF]
            yo = meta[M_YB]
            yl = meta[M_YLB]
            part = lscale * loss_phase(out_code, ws[:m, zo:zo + k],
                                       ws[:(m if meta[M_HASY] != 0 else 0), yo:yo + k],
                                       ix[yl:yl + (m if meta[M_HASYL] != 0 else 0)],
                                       ws[:(m if meta[M_HASSW] != 0 else 0), meta[M_SWB]],
                                       gscale, ws[:m, dzo:dzo + k], g, stride)
            if out_code == OUT_IDENTITY and meta[M_SOLVER] != SUM_GRAD:
                part /= k  # a training loss: scikit-learn's, averaged over the outputs
        elif kind == OUTPUT:
            k = meta[out_row + ZCOLS]
            zo = meta[out_row + Z_OFF]
            output_phase(meta[M_OUT], meta[M_APPLY], ws[:m, zo:zo + k], P[:m], g,
                         stride)
        else:
            code = meta[M_CODE]
            param = fx[F_PARAM]
            dkey = meta[M_DKEY]
            go = meta[M_GID] + start
            drows = ix[go:go + m]  # the batch's data rows (read by dropout only)
            zc = meta[row + ZCOLS]
            units = meta[row + UNITS]
            zo = meta[row + Z_OFF]
            ho = meta[row + H_OFF]
            bo = meta[row + B_OFF]
            ao = meta[row + A_OFF]
            d = meta[LR * META_COLS + FAN_IN]  # the features
            if kind == CSR_FORWARD:  # layer 0 of a CSR X, bias + act fused as in FORWARD
                data = fx[meta[M_NF]:]
                order = ix[meta[M_ORD]:]
                indptr = ix[meta[M_IP]:]
                indices = ix[meta[M_IND]:]
                if l == L - 1:
                    csr_forward_phase(data, indices, indptr, order, start, theta,
                                      meta[row + W_OFF], bo, -1, IDENTITY, param, True,
                                      ws[:m, zo:zo + zc], ws[:m, zo:zo + zc], g, stride,
                                      drows, dkey, l, DROP_ALL_KEPT, param)
                else:
                    csr_forward_phase(data, indices, indptr, order, start, theta,
                                      meta[row + W_OFF], bo, ao, code, param, code != MAXOUT,
                                      ws[:m, zo:zo + zc], ws[:m, ho:ho + units], g, stride,
                                      drows, dkey, l, meta[row + M_DTHR], fx[F_DFL + l])
            elif kind == FORWARD:
                if l == 0:  # predict's chunk in D, else the gathered batch Xb
                    if meta[M_XDIRECT] != 0:
                        Hp = D[:m, :d]
                    else:
                        xo = meta[M_XB]
                        Hp = ws[:m, xo:xo + d]
                else:
                    po = meta[prev_row + H_OFF]
                    Hp = ws[:m, po:po + meta[prev_row + UNITS]]
                # the logits (l = L - 1): bias only, the loss applies the output function
                forward_tiles(Hp, theta, meta[row + W_OFF], zc, first, step, tx, ty, sA, sB,
                              acc, a_reg, b_reg, ws, meta, fx, start, l, l != L - 1)
            elif kind == MAXOUT_FWD:
                a0 = meta[M_ARG] + meta[row + ARG_OFF]  # the argmax, stored as floats
                maxout_forward_phase(ws[:m, zo:zo + zc], theta[bo:bo + zc], meta[M_PIECES],
                                     ws[:m, ho:ho + units], ws[:m, a0:a0 + units], g, stride,
                                     drows, dkey, l, meta[row + M_DTHR], fx[F_DFL + l])
            elif kind == HIDDEN_BWD:
                a0 = meta[M_ARG] + meta[row + ARG_OFF]
                dho = meta[row + DH_OFF]
                dzo = meta[row + DZ_OFF]
                so = ao if ao >= 0 else bo  # prelu slopes (any vector otherwise)
                grad = params[meta[M_GRAD]]
                hidden_backward_phase(code, ws[:m, dho:dho + units], ws[:m, zo:zo + zc],
                                      ws[:m, ho:ho + units], ws[:m, a0:a0 + units],
                                      meta[M_PIECES], param, theta[so:so + units],
                                      ws[:m, dzo:dzo + zc], grad[so:so + units], g, stride)
            elif kind == BACKWARD or kind == CSR_BACKWARD:
                dzo = meta[row + DZ_OFF]
                dZ = ws[:m, dzo:dzo + zc]
                lam = alpha * gscale
                grad = params[meta[M_GRAD]]
                if kind == CSR_BACKWARD:  # layer 0 of a CSR X: dW, db, L2; no dH
                    sq = csr_backward_phase(fx[meta[M_NF]:], ix[meta[M_IND]:],
                                            ix[meta[M_IP]:], ix[meta[M_ORD]:], start, dZ,
                                            theta, grad, meta[row + W_OFF], bo,
                                            meta[row + FAN_IN], lam, g, stride)
                elif l == 0:  # the gathered batch Xb
                    xo = meta[M_XB]
                    sq = backward_tiles(ws[:m, xo:xo + d], dZ, theta, grad,
                                        meta[row + W_OFF], bo, lam, False, ws, first, step,
                                        tx, ty, sA, sB, acc, meta, fx, start, 0)
                else:
                    p = l - 1
                    pu = meta[prev_row + UNITS]
                    pho = meta[prev_row + H_OFF]
                    sq = backward_tiles(ws[:m, pho:pho + pu], dZ, theta, grad,
                                        meta[row + W_OFF], bo, lam, True, ws, first, step,
                                        tx, ty, sA, sB, acc, meta, fx, start, p)
                part = lscale * (of(alpha, 0.5) * alpha * sq)  # = rows x the batch's L2 term
        return part

    # launch bounds: at most NT threads a block, at least so many blocks resident per SM
    # (_common.py; the simulator takes none)
    sim = cuda_simulated()

    @cuda.jit(**({} if sim else {"launch_bounds": (NT, EPOCH_MIN_BLOCKS_PER_SM)}))
    def epoch_kernel(ix, fx, D, scales, params, ws, P, loss_acc):
        """Every phase of meta's schedule for its batches 0 .. M_NB - 1, a grid sync after
        each; loss_acc[0] += the summed loss contributions.  A cooperative launch."""
        sA = cuda.shared.array((TR, T1), dtype=ws.dtype)
        sB = cuda.shared.array((T, TR1), dtype=ws.dtype)
        red = cuda.shared.array(NT, dtype=float64)
        acc = cuda.local.array((R, R), dtype=ws.dtype)
        a_reg = cuda.local.array(R, dtype=ws.dtype)
        b_reg = cuda.local.array(R, dtype=ws.dtype)
        meta = ix
        # the thread's loss sum in red[its index] (float64 shared), not in registers, added
        # to phase by phase in the order a register sum would add
        red[cuda.threadIdx.x + cuda.threadIdx.y * T] = 0.0
        # phase p of batch b (the counts read from meta each time: less held through the
        # loop; counted, not divided: _common.quot)
        b = 0
        p = 0
        while b < meta[M_NB]:
            r = (LR + meta[M_L] + p) * META_COLS  # the schedule's row
            part = run_phase(meta[r], meta[r + 1], b, ix, fx, D, scales, params, ws, P,
                             sA, sB, acc, a_reg, b_reg)
            red[(cuda.threadIdx.x + cuda.threadIdx.y * T + meta[M_ZERO]) & 1023] += part  # f64
            cuda.cg.this_grid().sync()  # (the grid's handle fetched here, not held)
            p += 1
            if p == meta[M_NTAB]:
                p = 0
                b += 1
        block_sum_add(red, red[cuda.threadIdx.x + cuda.threadIdx.y * T], 1.0, loss_acc)

    @cuda.jit(**({} if sim else {"launch_bounds": (NT, PHASE_MIN_BLOCKS_PER_SM)}))
    def phase_kernel(kind, l, b, ix, fx, D, scales, params, ws, P, loss_acc):
        """One phase of one batch (the fallback driver launches one per phase)."""
        sA = cuda.shared.array((TR, T1), dtype=ws.dtype)
        sB = cuda.shared.array((T, TR1), dtype=ws.dtype)
        red = cuda.shared.array(NT, dtype=float64)
        acc = cuda.local.array((R, R), dtype=ws.dtype)
        a_reg = cuda.local.array(R, dtype=ws.dtype)
        b_reg = cuda.local.array(R, dtype=ws.dtype)
        part = run_phase(kind, l, b, ix, fx, D, scales, params, ws, P, sA, sB, acc,
                         a_reg, b_reg)
        alpha = fx[F_ALPHA]
        if kind == LOSS or ((kind == BACKWARD or kind == CSR_BACKWARD)
                            and alpha != of(alpha, 0.0)):
            block_sum_add(red, part, 1.0, loss_acc)

    _KERNELS[key] = (epoch_kernel, phase_kernel)
    return _KERNELS[key]


def cooperative_blocks(kernel, args, block):
    """``max_cooperative_grid_blocks`` of ``kernel`` compiled for ``args`` (1 in the simulator)."""
    from . import is_simulated

    if is_simulated():
        return int(kernel.overloads[None].max_cooperative_grid_blocks(block))
    compiled = kernel.compile(tuple(kernel.typeof_pyval(a) for a in args))
    return int(compiled.max_cooperative_grid_blocks(block))


# rows of the data a host chunk of ``D`` holds at most while it is filled
_D_CHUNK_ELEMS = 1 << 22
# the segments of ``ix``, in their order there
_IX_SEGMENTS = ("meta", "y", "yb", "indptr", "indices", "order", "gid")


class Program:
    """One network on the device for batches of up to ``cap`` rows, and the two drivers.

    Holds the kernels' eight arrays (``META_ROWS``): the data's rows ``D`` (X where
    dense, Y and sw side by side; empty for prediction), ``params`` (theta, grad and
    the optimizer state as its rows; ``theta``, ``grad``, ``state1``, ``state2`` are
    views of them), the workspace ``ws`` (with maxout's argmax and the batch buffers
    as column ranges), the prediction buffer P, a float64 loss accumulator, the
    ``scales`` of an epoch, and ``ix`` and ``fx``: the scalars, layers and schedule
    (``meta``), the order and the integer data; the hyper-parameters and a CSR X's
    values.  ``run(table, n_batches, ...)`` executes a schedule with the driver
    ``_config.CUDA_EPOCH_DRIVER`` selects.

    ``csr``: the host arrays (data, indices, indptr) of a CSR matrix X (X None;
    ``cuda.csr_rows``), sent here, or three empty arrays for a CSR predict, whose
    chunks ``send_rows`` sends.  The rows are then not gathered (no Xb columns)
    and the schedule must be ``schedule(..., sparse=True)``.  A dense predict (X None,
    ``grad`` False) writes each chunk into ``D`` (cap, d), which FORWARD 0 reads in place.
    """

    def __init__(self, spec, cap, theta, X, Y, y, sw, state1=None, state2=None, grad=True,
                 csr=None):
        dt = spec.dtype
        self.spec = spec
        self.cap = int(cap)
        d = spec.n_features
        k = spec.n_outputs
        L = spec.layers.shape[0]
        n_params = int(spec.n_params)
        self.sparse = csr is not None
        # theta, grad and the optimizer states: rows of one array
        own = [s is not None and s.shape[0] == n_params and n_params > 0
               for s in (state1, state2)]
        self.params = cuda.device_array((1 + int(bool(grad)) + sum(own), max(n_params, 1)),
                                        dtype=dt)
        self.theta = self.params[0]
        self.theta.copy_to_device(np.ascontiguousarray(theta, dtype=dt))
        grad_row = 1 if grad else 0
        self.grad = self.params[grad_row]
        rows = [grad_row, grad_row]
        nxt = grad_row + 1
        states = []
        for i, (s, mine) in enumerate(zip((state1, state2), own)):
            if mine:
                rows[i] = nxt
                view = self.params[nxt]
                view.copy_to_device(np.ascontiguousarray(s, dtype=dt))
                states.append(view)
                nxt += 1
            else:  # absent or empty (SGD's state2): never read by the kernels
                states.append(cuda.to_device(s) if s is not None else self.grad)
        self.state1, self.state2 = states
        # the data's rows, side by side in D: X (dense; gathered), Y, sw
        self.x_direct = X is None and not grad and not self.sparse  # a dense predict
        empty = np.zeros(0, np.int64)
        if csr is None:
            csr = (np.zeros(0, dt), empty, empty)
        has_Y = Y is not None and Y.shape[0] > 0
        has_y = y is not None and y.shape[0] > 0
        has_sw = sw is not None and sw.shape[0] > 0
        gx = X is not None and not self.sparse
        dx, ky = (d if gx else 0), (k if has_Y else 0)
        dcols = dx + ky + int(has_sw)
        n = (X.shape[0] if X is not None else max(csr[2].shape[0] - 1, 0))
        if self.x_direct:
            self.D = cuda.device_array((self.cap, d), dt)
        elif dcols and n:
            self.D = cuda.device_array((n, dcols), dt)
            step = max(1, _D_CHUNK_ELEMS // dcols)
            for a in range(0, n, step):
                b = min(n, a + step)
                h = np.empty((b - a, dcols), dtype=dt)
                if gx:
                    h[:, :d] = X[a:b]
                if has_Y:
                    h[:, dx:dx + k] = Y[a:b]
                if has_sw:
                    h[:, dx + ky] = sw[a:b]
                self.D[a:b].copy_to_device(h)
        else:
            self.D = cuda.device_array((0, 1), dt)
        # the workspace ws: the layers' columns, maxout's argmax (``layout``'s iws columns,
        # stored as floats: small integers, exact), then the batch buffers Xb, Yb, swb (D's
        # columns, gathered); the batch's labels yb are a segment of ix
        xb = spec.ws_cols + spec.iws_cols
        self.ws = cuda.device_array((self.cap, max(xb + dcols, 1)), dtype=dt)
        self.P = cuda.device_array((1 if grad else self.cap, k), dtype=dt)
        self.acc = cuda.device_array(1, dtype=np.float64)
        self.scales = cuda.to_device(np.ones((1, 3), dtype=np.float64))  # predict: one batch
        # fx: the hyper-parameters and dropout scales (nf values), then the CSR values
        self._nf = F_DFL + 2 * L
        self.fx = cuda.device_array(self._nf + max(csr[0].shape[0], 1), dtype=dt)
        self._fp = None  # the hyper-parameters fx holds (host copy)
        if csr[0].shape[0]:
            self.fx[self._nf:self._nf + csr[0].shape[0]].copy_to_device(csr[0])
        # ix: the integer arrays, each a segment (_IX_SEGMENTS), sent on change
        self._ix_host = {"meta": None,
                         "y": np.ascontiguousarray(y, dtype=np.int64) if has_y else empty,
                         "yb": None,
                         "indptr": csr[2], "indices": csr[1], "order": empty, "gid": None}
        self._ix_room = {name: 0 for name in _IX_SEGMENTS}
        # meta: room for the longest schedule (4 L + 3 phases), so that it never moves
        self._ix_room["meta"] = (META_ROWS + 5 * L + 4) * META_COLS
        self._ix_room["yb"] = self.cap if has_y else 0  # the batch's labels (GATHER)
        self._ix_off = {}
        self.ix = None
        self._ix_layout()
        # dropout: the epoch's key, thresholds and scales (none: all kept)
        self.drop_key = 0
        self._dthr = np.full(L, DROP_ALL_KEPT, dtype=np.int64)
        self._dfl = np.ones((2, L), dtype=dt)
        # the integer scalars of meta row 0 that do not change between runs
        self._m0 = {M_L: L, M_CODE: int(spec.code), M_PIECES: int(spec.pieces),
                    M_OUT: int(spec.out_code), M_XDIRECT: int(self.x_direct),
                    M_GRAD: grad_row, M_S1: rows[0], M_S2: rows[1], M_XB: xb,
                    M_YB: xb + dx if has_Y else 0, M_SWB: xb + dx + ky if has_sw else 0,
                    M_ARG: spec.ws_cols,
                    M_DCOLS: dcols if not self.x_direct else 0, M_HASY: int(has_Y),
                    M_HASYL: int(has_y), M_HASSW: int(has_sw), M_NF: self._nf}
        self._zero = np.zeros(1, dtype=np.float64)
        self._grids = {}
        self.last_driver = None

    def _ix_layout(self):
        """Lay the segments of ``ix`` out anew (each with room for its host array) and
        send them all."""
        off = 0
        for name in _IX_SEGMENTS:
            h = self._ix_host[name]
            self._ix_room[name] = max(self._ix_room[name], 0 if h is None else h.shape[0])
            self._ix_off[name] = off
            off += self._ix_room[name]
        self.ix = cuda.device_array(max(off, 1), dtype=np.int64)
        for name in _IX_SEGMENTS:
            self._ix_copy(name)

    def _ix_copy(self, name):
        h = self._ix_host[name]
        if h is not None and h.shape[0]:
            o = self._ix_off[name]
            self.ix[o:o + h.shape[0]].copy_to_device(h)

    def _ix_put(self, name, host, room=0):
        """Segment ``name`` of ``ix`` := host (None: no segment), grown to ``room``."""
        self._ix_host[name] = host
        n = 0 if host is None else host.shape[0]
        if max(n, room) > self._ix_room[name]:
            self._ix_room[name] = max(n, room)
            self._ix_layout()
        else:
            self._ix_copy(name)

    def set_dropout(self, thresholds, scales):
        """The dropout's per-layer keep thresholds and scales (``layout.Dropout.arrays``),
        once per fit (sent with the next run's ``meta`` and ``fx``)."""
        self._dthr = np.ascontiguousarray(thresholds, dtype=np.int64)
        self._dfl = np.ascontiguousarray(scales, dtype=self.spec.dtype)

    def set_epoch(self, order, scales, gid=None, key=0):
        """Send an epoch's row order (int64) and per-batch (gradient, loss, step) scales
        (float64, ``epoch_scales``); with dropout, the data rows of the order's entries
        (gid; None: order itself) and the epoch's key."""
        if self.scales.shape[0] != scales.shape[0]:
            self.scales = cuda.device_array(scales.shape, dtype=np.float64)
        self.scales.copy_to_device(scales)
        self._ix_put("order", np.ascontiguousarray(order, dtype=np.int64))
        self._ix_put("gid", None if gid is None else np.ascontiguousarray(gid, dtype=np.int64))
        self.drop_key = int(key)

    def send_rows(self, data, indices, indptr, room=0):
        """Send a predict chunk's CSR rows (its ``indptr`` from 0) into the device arrays,
        growing each that is too small to at least ``room`` entries."""
        n = data.shape[0]
        if self.fx.shape[0] < self._nf + n:
            self.fx = cuda.device_array(self._nf + max(n, int(room)), dtype=self.fx.dtype)
            self._fp = None  # the new fx has no hyper-parameters yet
        if n:
            self.fx[self._nf:self._nf + n].copy_to_device(data)
        self._ix_put("indices", indices, int(room))
        self._ix_put("indptr", indptr)

    def _args(self, table, n_batches, n_rows, solver, hyper, alpha, apply_out):
        """The kernels' arguments after (kind, l, b) (the one-phase kernel's), with
        ``meta`` and the head of ``fx`` packed and sent where they changed
        (``META_ROWS``).  The float hyper-parameters are cast to the model's dtype here,
        once, as the CPU's Adam step casts them (c1 = 1 - beta1 and c2 = 1 - beta2 in
        float64 first)."""
        s = self.spec
        dt = np.dtype(s.dtype).type
        momentum, nesterov, beta1, beta2, eps = hyper
        e = dt(eps)
        if eps > 0 and e == 0:  # below the dtype's tiniest: the tiniest, so sqrt(v) + eps > 0
            e = dt(np.finfo(dt).smallest_subnormal)
        L = s.layers.shape[0]
        size = (META_ROWS + L + table.shape[0]) * META_COLS
        if size > self._ix_room["meta"]:  # (before the offsets below are read)
            self._ix_put("meta", self._ix_host["meta"], size)
        meta = np.zeros((META_ROWS + L + table.shape[0], META_COLS), dtype=np.int64)
        for slot, v in self._m0.items():
            meta[0, slot] = v
        meta[0, M_NTAB] = table.shape[0]
        meta[0, M_NB] = int(n_batches)
        meta[0, M_APPLY] = int(bool(apply_out))
        meta[0, M_NROWS] = int(n_rows)
        meta[0, M_SOLVER] = int(solver)
        meta[0, M_NEST] = int(bool(nesterov))
        meta[0, M_DKEY] = int(self.drop_key)
        off = self._ix_off
        meta[0, M_ORD] = off["order"]
        meta[0, M_GID] = off["gid"] if self._ix_host["gid"] is not None else off["order"]
        meta[0, M_YO], meta[0, M_IP], meta[0, M_IND] = off["y"], off["indptr"], off["indices"]
        meta[0, M_YLB] = off["yb"]
        meta[META_ROWS:META_ROWS + L, :N_COLS] = s.layers
        meta[META_ROWS:META_ROWS + L, M_DTHR] = self._dthr
        meta[META_ROWS + L:, :2] = table
        meta = meta.reshape(-1)
        last = self._ix_host["meta"]
        if last is None or last.shape != meta.shape or not np.array_equal(last, meta):
            self._ix_put("meta", meta)
        fp = np.empty(self._nf, dtype=dt)
        fp[:F_DFL] = (dt(s.param), dt(momentum), dt(beta1), dt(1.0 - float(beta1)), dt(beta2),
                      dt(1.0 - float(beta2)), e, dt(alpha))
        fp[F_DFL:] = self._dfl.reshape(-1)
        if self._fp is None or not np.array_equal(self._fp, fp):
            self.fx[:self._nf].copy_to_device(fp)
            self._fp = fp
        return (self.ix, self.fx, self.D, self.scales, self.params, self.ws, self.P, self.acc)


    def run(self, table, n_batches, n_rows, solver=0, hyper=(0.0, False, 0.9, 0.999, 1e-8),
            alpha=0.0, apply_out=False):
        """Every phase of ``table`` for batches 0 .. n_batches-1; returns the summed loss
        contributions (one float64 read back)."""
        self.acc.copy_to_device(self._zero)
        T, R = tile(), reg_block()
        epoch_kernel, phase_kernel = kernels(T, R)
        args = self._args(table, n_batches, n_rows, solver, hyper, alpha, apply_out)
        blocks = phase_blocks(self.spec.layers, table, self.cap,
                              0 if self.sparse else self.spec.n_features,
                              self.spec.n_outputs, self.spec.n_params, T, R)
        mode = driver()
        grid = self._persistent_grid(epoch_kernel, table, args, blocks, mode) \
            if mode != "launches" else 0
        with warnings.catch_warnings():
            # small phases launch small grids by design; numba would warn on each
            from numba.core.errors import NumbaPerformanceWarning

            warnings.simplefilter("ignore", NumbaPerformanceWarning)
            if grid > 0:
                try:
                    epoch_kernel[grid, (T, T)](*args)
                    self.last_driver = "persistent"
                    return float(self.acc.copy_to_host()[0])
                except Exception as exc:  # launch refused: fall back once, for good
                    if mode == "persistent":
                        raise
                    _fallback(f"the cooperative launch failed ({type(exc).__name__}: {exc})")
                    self.acc.copy_to_device(self._zero)
            cap_blocks = int(MAX_BLOCKS)
            for b in range(int(n_batches)):
                for (kind, l), nb in zip(table, blocks):
                    phase_kernel[min(nb, cap_blocks), (T, T)](int(kind), int(l), b, *args)
        self.last_driver = "launches"
        return float(self.acc.copy_to_host()[0])

    def _persistent_grid(self, kernel, table, args, blocks, mode):
        """Blocks of the persistent grid, or 0 when the fallback must run."""
        if _FALLBACK_REASON and mode == "auto":
            return 0
        key = (table.tobytes(), tile(), reg_block(), int(MAX_BLOCKS))
        grid = self._grids.get(key)
        if grid is None:
            T = tile()
            try:
                most = cooperative_blocks(kernel, args, (T, T))
            except Exception as exc:  # no cooperative launch on this device / toolkit
                if mode == "persistent":
                    raise
                _fallback(f"the persistent kernel did not build ({type(exc).__name__}: {exc})")
                return 0
            if most < 1:
                if mode == "persistent":
                    raise RuntimeError("the persistent epoch kernel cannot be resident on this GPU")
                return 0  # this network's kernel cannot hold a grid: launches, this time
            grid = self._grids[key] = max(1, min(most, max(blocks), int(MAX_BLOCKS)))
        return grid


_FALLBACK_REASON = []


def _fallback(reason):
    """Switch "auto" to the per-phase launches for the rest of the process, saying why once."""
    if not _FALLBACK_REASON:
        _FALLBACK_REASON.append(reason)
        warnings.warn(f"fastmlp CUDA: {reason}; using one launch per phase instead.",
                      RuntimeWarning, stacklevel=3)


def epoch_scales(sw, order, cap, n_batches, steps=None):
    """Host float64 (n_batches, 3): per batch 1 / weight sum, rows / weight sum (0 and 0
    for a batch whose rows all weigh 0: it contributes nothing) and the step size
    ``steps[b]`` (``optimizers.step_sizes``; 0 without)."""
    n = order.shape[0]
    starts = np.arange(0, n, cap)
    rows = np.minimum(cap, n - starts).astype(np.float64)
    wsum = rows if sw is None else np.add.reduceat(sw[order].astype(np.float64), starts)
    out = np.zeros((n_batches, 3), dtype=np.float64)
    if steps is not None:
        out[:, 2] = steps
    pos = wsum > 0
    out[pos, 0] = 1.0 / wsum[pos]
    out[pos, 1] = rows[pos] / wsum[pos]
    return out
