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

Buffers: ``theta``/``grad``/optimizer state are flat device arrays (W of layer
l at ``layers[l, W_OFF]``, row-major (fan_in, zcols)); the per-row buffers
are 2-D device arrays of ``cap`` rows: the float workspace ``ws`` (cap,
ws_cols) holds the buffer of ``c`` columns at column offset ``o`` of the
``layers`` table as the view ``ws[:m, o:o + c]``; ``iws`` likewise the maxout
argmax.  Nothing is allocated per batch or per epoch.
"""

import warnings

import numpy as np
from numba import cuda, float64

from ..._registry import IDENTITY, MAXOUT, OUT_IDENTITY, PRELU
from ..layout import (
    A_OFF, ARG_OFF, B_OFF, DH_OFF, DZ_OFF, FAN_IN, H_OFF, UNITS, W_OFF, Z_OFF, ZCOLS,
)
from ..scalar import DROP_ALL_KEPT, of
from .. import cuda_simulated
from ._common import (
    EPOCH_MIN_BLOCKS_PER_SM, MAX_BLOCKS, PHASE_MIN_BLOCKS_PER_SM, block_sum_add, driver,
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

    @cuda.jit(device=True)
    def gather(X, Y, y, sw, order, start, m, Xb, Yb, yb, swb, g, stride):
        """Rows order[start : start + m] of X, Y, y, sw (each where not empty: X is empty
        for a CSR matrix, whose rows are read where they lie) into Xb, Yb, yb, swb."""
        if X.shape[0] > 0:
            d = X.shape[1]
            for t in range(g, m * d, stride):
                i = t // d
                j = t - i * d
                Xb[i, j] = X[order[start + i], j]
        if Y.shape[0] > 0:
            k = Y.shape[1]
            for t in range(g, m * k, stride):
                i = t // k
                j = t - i * k
                Yb[i, j] = Y[order[start + i], j]
        if y.shape[0] > 0:
            for i in range(g, m, stride):
                yb[i] = y[order[start + i]]
        if sw.shape[0] > 0:
            for i in range(g, m, stride):
                swb[i] = sw[order[start + i]]

    @cuda.jit(device=True)
    def drop_threshold(dthr, l):
        """Layer l's keep threshold; ``DROP_ALL_KEPT`` (no dropout) when dthr is empty."""
        return dthr[l] if dthr.shape[0] > 0 else DROP_ALL_KEPT

    @cuda.jit(device=True)
    def drop_scale(dfl, k, l, like):
        """dfl[k, l] (1 / (1 - rate) for k = 0, 1 - rate for k = 1) in like's type; 1 when
        there is no dropout."""
        return dfl[k, l] if dfl.shape[1] > 0 else of(like, 1.0)

    @cuda.jit(device=True)
    def run_phase(kind, l, b, layers, code, param, pieces, out_code, apply_out,
                  X, data, indices, indptr, Y, y, sw, order, gid, dkey, dthr, dfl, scales,
                  n_rows, theta, grad,
                  state1, state2, solver, momentum, nesterov, beta1, c1, beta2, c2, eps, alpha,
                  ws, iws, Xb, Yb, yb, swb, P, sA, sB, acc, a_reg, b_reg):
        """Phase ``kind`` (layer l) of batch b for the calling block; returns this
        thread's share of the batch's loss contribution (float64).

        The hyper-parameters (param, momentum, beta1, c1 = 1 - beta1, beta2, c2, eps,
        alpha) arrive in theta's dtype, cast once on the host; ``scales`` row b is
        float64 and cast here, except the loss scale, which only the float64 loss sum
        uses.  So a float32 kernel computes in float32 throughout, but for that sum.

        X is the dense data (n, d), or (0, d) with a CSR matrix in data, indices,
        indptr (``sparse.py``; empty with a dense X); Xb the batch buffer (cap, d), or
        (0, d) where the rows are not gathered (CSR).

        Dropout: gid (n_rows,) the data row of each entry of ``order`` (keys the masks),
        dkey the epoch's ``scalar.dropout_key``, dthr (L,) int64 keep thresholds and dfl
        (2, L) the scales 1 / (1 - rate) and 1 - rate; dthr empty: no dropout (the
        masks' code is skipped, the arithmetic is that of a fit without it).
        """
        first = cuda.blockIdx.x
        step = cuda.gridDim.x
        stride = step * NT
        g = first * NT + cuda.threadIdx.x + cuda.threadIdx.y * T
        cap = ws.shape[0]
        start = b * cap
        m = min(cap, n_rows - start)
        L = layers.shape[0]
        gscale = of(alpha, scales[b, 0])  # gradient scale: 1 / (weight sum of the batch)
        lscale = scales[b, 1]  # loss scale: rows / weight sum (training), 1 (full-batch sums)
        drows = gid[start:start + m]  # the batch's data rows (read by dropout only)
        part = 0.0  # float64: the loss sum
        if kind == GATHER:
            gather(X, Y, y, sw, order, start, m, Xb, Yb, yb, swb, g, stride)
        elif kind == STEP:
            # scales[b, 2]: the step size of batch b (lr, or Adam's bias-corrected lr_t)
            step_phase(solver, theta, grad, state1, state2, of(alpha, scales[b, 2]), momentum,
                       nesterov, beta1, c1, beta2, c2, eps, g, stride)
        elif kind == LOSS:
            k = layers[L - 1, ZCOLS]
            zo = layers[L - 1, Z_OFF]
            dzo = layers[L - 1, DZ_OFF]
            part = lscale * loss_phase(out_code, ws[:m, zo:zo + k], Yb[:m], yb[:m],
                                       swb[:m], gscale, ws[:m, dzo:dzo + k], g, stride)
            if out_code == OUT_IDENTITY and solver != SUM_GRAD:
                part /= k  # a training loss: scikit-learn's, averaged over the outputs
        elif kind == OUTPUT:
            k = layers[L - 1, ZCOLS]
            zo = layers[L - 1, Z_OFF]
            output_phase(out_code, apply_out, ws[:m, zo:zo + k], P[:m], g, stride)
        else:
            zc = layers[l, ZCOLS]
            units = layers[l, UNITS]
            zo = layers[l, Z_OFF]
            ho = layers[l, H_OFF]
            bo = layers[l, B_OFF]
            ao = layers[l, A_OFF]
            if kind == CSR_FORWARD:  # layer 0 of a CSR X, bias + act fused as in FORWARD
                if l == L - 1:
                    csr_forward_phase(data, indices, indptr, order, start, theta,
                                      layers[l, W_OFF], bo, -1, IDENTITY, param, True,
                                      ws[:m, zo:zo + zc], ws[:m, zo:zo + zc], g, stride,
                                      drows, dkey, l, DROP_ALL_KEPT, param)
                else:
                    csr_forward_phase(data, indices, indptr, order, start, theta,
                                      layers[l, W_OFF], bo, ao, code, param, code != MAXOUT,
                                      ws[:m, zo:zo + zc], ws[:m, ho:ho + units], g, stride,
                                      drows, dkey, l, drop_threshold(dthr, l),
                                      drop_scale(dfl, 0, l, param))
            elif kind == FORWARD:
                if l == 0:
                    Hp = Xb[:m]
                else:
                    po = layers[l - 1, H_OFF]
                    Hp = ws[:m, po:po + layers[l - 1, UNITS]]
                Z = ws[:m, zo:zo + zc]
                if l == L - 1:  # logits: bias only, the loss applies the output function
                    forward_tiles(Hp, theta, layers[l, W_OFF], bo, -1, zc, IDENTITY, param,
                                  True, Z, Z, first, step, sA, sB, acc, a_reg, b_reg,
                                  drows, dkey, l, DROP_ALL_KEPT, param)
                else:
                    forward_tiles(Hp, theta, layers[l, W_OFF], bo, ao, zc, code, param,
                                  code != MAXOUT, Z, ws[:m, ho:ho + units], first, step,
                                  sA, sB, acc, a_reg, b_reg, drows, dkey, l,
                                  drop_threshold(dthr, l), drop_scale(dfl, 0, l, param))
            elif kind == MAXOUT_FWD:
                a0 = layers[l, ARG_OFF]
                maxout_forward_phase(ws[:m, zo:zo + zc], theta[bo:bo + zc], pieces,
                                     ws[:m, ho:ho + units], iws[:m, a0:a0 + units], g, stride,
                                     drows, dkey, l, drop_threshold(dthr, l),
                                     drop_scale(dfl, 0, l, param))
            elif kind == HIDDEN_BWD:
                a0 = layers[l, ARG_OFF]
                dho = layers[l, DH_OFF]
                dzo = layers[l, DZ_OFF]
                so = ao if ao >= 0 else bo  # prelu slopes (any vector otherwise)
                hidden_backward_phase(code, ws[:m, dho:dho + units], ws[:m, zo:zo + zc],
                                      ws[:m, ho:ho + units], iws[:m, a0:a0 + units], pieces,
                                      param, theta[so:so + units], ws[:m, dzo:dzo + zc],
                                      grad[so:so + units], g, stride)
            elif kind == BACKWARD or kind == CSR_BACKWARD:
                dzo = layers[l, DZ_OFF]
                dZ = ws[:m, dzo:dzo + zc]
                lam = alpha * gscale
                if kind == CSR_BACKWARD:  # layer 0 of a CSR X: dW, db, L2; no dH
                    sq = csr_backward_phase(data, indices, indptr, order, start, dZ, theta,
                                            grad, layers[l, W_OFF], bo, layers[l, FAN_IN], lam,
                                            g, stride)
                elif l == 0:
                    sq = backward_tiles(Xb[:m], dZ, theta, grad, layers[l, W_OFF], bo, lam,
                                        False, code, param, dZ, dZ, -1, False, dZ,
                                        first, step, sA, sB, acc, drows, dkey, l,
                                        DROP_ALL_KEPT, param, param)
                else:
                    p = l - 1
                    pu = layers[p, UNITS]
                    pzo = layers[p, Z_OFF]
                    pho = layers[p, H_OFF]
                    fuse = code != MAXOUT and code != PRELU
                    # fused: dZ(l-1) = (dZ W^T) * act'; else dH(l-1), finished by HIDDEN_BWD
                    oo = layers[p, DZ_OFF] if fuse else layers[p, DH_OFF]
                    sq = backward_tiles(ws[:m, pho:pho + pu], dZ, theta, grad, layers[l, W_OFF],
                                        bo, lam, True, code, param, ws[:m, pzo:pzo + pu],
                                        ws[:m, pho:pho + pu], layers[p, A_OFF], fuse,
                                        ws[:m, oo:oo + pu], first, step, sA, sB, acc,
                                        drows, dkey, p, drop_threshold(dthr, p),
                                        drop_scale(dfl, 0, p, param),
                                        drop_scale(dfl, 1, p, param))
                part = lscale * (of(alpha, 0.5) * alpha * sq)  # = rows x the batch's L2 term
        return part

    # launch bounds: at most NT threads a block, at least so many blocks resident per SM
    # (_common.py; the simulator takes none)
    sim = cuda_simulated()

    @cuda.jit(**({} if sim else {"launch_bounds": (NT, EPOCH_MIN_BLOCKS_PER_SM)}))
    def epoch_kernel(table, n_batches, layers, code, param, pieces, out_code, apply_out,
                     X, data, indices, indptr, Y, y, sw, order, gid, dkey, dthr, dfl, scales,
                     n_rows, theta, grad, state1, state2, solver, momentum, nesterov, beta1, c1,
                     beta2, c2, eps, alpha, ws, iws, Xb, Yb, yb, swb, P, loss_acc):
        """Every phase of ``table`` for batches 0 .. n_batches-1, a grid sync after each;
        loss_acc[0] += the summed loss contributions.  A cooperative launch."""
        sA = cuda.shared.array((TR, T1), dtype=theta.dtype)
        sB = cuda.shared.array((T, TR1), dtype=theta.dtype)
        red = cuda.shared.array(NT, dtype=float64)
        acc = cuda.local.array((R, R), dtype=theta.dtype)
        a_reg = cuda.local.array(R, dtype=theta.dtype)
        b_reg = cuda.local.array(R, dtype=theta.dtype)
        grid = cuda.cg.this_grid()
        part = 0.0
        for b in range(n_batches):
            for p in range(table.shape[0]):
                part += run_phase(table[p, 0], table[p, 1], b, layers, code, param, pieces,
                                  out_code, apply_out, X, data, indices, indptr, Y, y, sw,
                                  order, gid, dkey, dthr, dfl, scales, n_rows, theta, grad,
                                  state1, state2, solver, momentum, nesterov, beta1, c1, beta2,
                                  c2, eps, alpha, ws, iws, Xb, Yb, yb, swb, P,
                                  sA, sB, acc, a_reg, b_reg)
                grid.sync()
        block_sum_add(red, part, 1.0, loss_acc)

    @cuda.jit(**({} if sim else {"launch_bounds": (NT, PHASE_MIN_BLOCKS_PER_SM)}))
    def phase_kernel(kind, l, b, layers, code, param, pieces, out_code, apply_out,
                     X, data, indices, indptr, Y, y, sw, order, gid, dkey, dthr, dfl, scales,
                     n_rows, theta, grad, state1, state2, solver, momentum, nesterov, beta1, c1,
                     beta2, c2, eps, alpha, ws, iws, Xb, Yb, yb, swb, P, loss_acc):
        """One phase of one batch (the fallback driver launches one per phase)."""
        sA = cuda.shared.array((TR, T1), dtype=theta.dtype)
        sB = cuda.shared.array((T, TR1), dtype=theta.dtype)
        red = cuda.shared.array(NT, dtype=float64)
        acc = cuda.local.array((R, R), dtype=theta.dtype)
        a_reg = cuda.local.array(R, dtype=theta.dtype)
        b_reg = cuda.local.array(R, dtype=theta.dtype)
        part = run_phase(kind, l, b, layers, code, param, pieces, out_code, apply_out,
                         X, data, indices, indptr, Y, y, sw, order, gid, dkey, dthr, dfl,
                         scales, n_rows, theta, grad, state1, state2, solver, momentum, nesterov,
                         beta1, c1, beta2, c2, eps, alpha, ws, iws, Xb, Yb, yb, swb, P, sA, sB,
                         acc, a_reg, b_reg)
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


class Program:
    """One network on the device for batches of up to ``cap`` rows, and the two drivers.

    Holds the device copies of the data (X, Y, y, sw; empty for prediction),
    theta, grad, the optimizer state, the workspaces, the batch buffers, the
    prediction buffer P, a float64 loss accumulator and the ``order`` and
    ``scales`` buffers of an epoch.  ``run(table, n_batches, ...)`` executes a
    schedule with the driver ``_config.CUDA_EPOCH_DRIVER`` selects.

    ``csr``: the host arrays (data, indices, indptr) of a CSR matrix X (X None;
    ``cuda.csr_rows``), sent here, or three empty arrays for a CSR predict, whose
    chunks ``send_rows`` sends.  The rows are then not gathered (Xb has 0 rows)
    and the schedule must be ``schedule(..., sparse=True)``.
    """

    def __init__(self, spec, cap, theta, X, Y, y, sw, state1=None, state2=None, grad=True,
                 csr=None):
        dt = spec.dtype
        self.spec = spec
        self.cap = int(cap)
        d = spec.n_features
        k = spec.n_outputs
        self.layers = cuda.to_device(np.ascontiguousarray(spec.layers))
        self.theta = cuda.to_device(np.ascontiguousarray(theta, dtype=dt))
        self.grad = cuda.device_array_like(self.theta) if grad else self.theta
        self.state1 = cuda.to_device(state1) if state1 is not None else self.grad
        self.state2 = cuda.to_device(state2) if state2 is not None else self.grad
        self.X = cuda.to_device(X) if X is not None else cuda.device_array((0, d), dt)
        self.sparse = csr is not None
        if csr is None:  # (empty: the kernels' CSR arguments are never read)
            csr = (np.zeros(0, dt), np.zeros(0, np.int64), np.zeros(0, np.int64))
        self.data, self.indices, self.indptr = (cuda.to_device(a) for a in csr)
        self.Y = cuda.to_device(Y) if Y is not None else cuda.device_array((0, k), dt)
        self.y = cuda.to_device(y) if y is not None else cuda.device_array(0, np.int64)
        self.sw = cuda.to_device(sw) if sw is not None else cuda.device_array(0, dt)
        self.ws = cuda.device_array((self.cap, max(spec.ws_cols, 1)), dtype=dt)
        self.iws = cuda.device_array((self.cap, max(spec.iws_cols, 1)), dtype=np.int32)
        self.Xb = cuda.device_array((0 if self.sparse else self.cap, d), dtype=dt)
        self.Yb = cuda.device_array((self.cap if self.Y.shape[0] else 0, k), dtype=dt)
        self.yb = cuda.device_array(self.cap if self.y.shape[0] else 0, dtype=np.int64)
        self.swb = cuda.device_array(self.cap if self.sw.shape[0] else 0, dtype=dt)
        self.P = cuda.device_array((1 if grad else self.cap, k), dtype=dt)
        self.acc = cuda.device_array(1, dtype=np.float64)
        self.order = cuda.device_array(0, dtype=np.int64)
        # dropout: the data row of each entry of order (order itself unless the rows are a
        # chunk of the data), the epoch's key, thresholds and scales (empty: none)
        self.gid = self.order
        self.drop_key = 0
        self.dthr = cuda.device_array(0, dtype=np.int64)
        self.dfl = cuda.device_array((2, 0), dtype=dt)
        self.scales = cuda.to_device(np.ones((1, 3), dtype=np.float64))  # predict: one batch
        self._zero = np.zeros(1, dtype=np.float64)
        self._grids = {}
        self.last_driver = None

    def set_dropout(self, thresholds, scales):
        """Send the dropout's per-layer keep thresholds and scales
        (``layout.Dropout.arrays``), once per fit."""
        self.dthr = cuda.to_device(np.ascontiguousarray(thresholds, dtype=np.int64))
        self.dfl = cuda.to_device(np.ascontiguousarray(scales, dtype=self.spec.dtype))

    def set_epoch(self, order, scales, gid=None, key=0):
        """Send an epoch's row order (int64) and per-batch (gradient, loss, step) scales
        (float64, ``epoch_scales``); with dropout, the data rows of the order's entries
        (gid; None: order itself) and the epoch's key."""
        if self.order.shape[0] != order.shape[0]:
            self.order = cuda.device_array(order.shape[0], dtype=np.int64)
        if self.scales.shape[0] != scales.shape[0]:
            self.scales = cuda.device_array(scales.shape, dtype=np.float64)
        self.order.copy_to_device(order)
        self.scales.copy_to_device(scales)
        self.gid = self.order
        if gid is not None:
            self.gid = cuda.to_device(np.ascontiguousarray(gid, dtype=np.int64))
        self.drop_key = int(key)

    def send_rows(self, data, indices, indptr, room=0):
        """Send a predict chunk's CSR rows (its ``indptr`` from 0) into the device arrays,
        growing each that is too small to at least ``room`` entries."""
        self.data = _fill(self.data, data, room)
        self.indices = _fill(self.indices, indices, room)
        self.indptr = _fill(self.indptr, indptr, 0)

    def _args(self, n_rows, solver, hyper, alpha, apply_out):
        """The kernels' arguments after (table, n_batches) or (kind, l, b).  The float
        hyper-parameters are cast to the model's dtype here, once, as the CPU's Adam step
        casts them (c1 = 1 - beta1 and c2 = 1 - beta2 in float64 first)."""
        s = self.spec
        dt = np.dtype(s.dtype).type
        momentum, nesterov, beta1, beta2, eps = hyper
        e = dt(eps)
        if eps > 0 and e == 0:  # below the dtype's tiniest: the tiniest, so sqrt(v) + eps > 0
            e = dt(np.finfo(dt).smallest_subnormal)
        return (self.layers, int(s.code), dt(s.param), int(s.pieces), int(s.out_code),
                bool(apply_out), self.X, self.data, self.indices, self.indptr, self.Y, self.y,
                self.sw, self.order, self.gid, int(self.drop_key), self.dthr, self.dfl,
                self.scales, int(n_rows), self.theta, self.grad, self.state1, self.state2,
                int(solver),
                dt(momentum), bool(nesterov), dt(beta1), dt(1.0 - float(beta1)), dt(beta2),
                dt(1.0 - float(beta2)), e, dt(alpha), self.ws, self.iws, self.Xb, self.Yb,
                self.yb, self.swb, self.P, self.acc)

    def run(self, table, n_batches, n_rows, solver=0, hyper=(0.0, False, 0.9, 0.999, 1e-8),
            alpha=0.0, apply_out=False):
        """Every phase of ``table`` for batches 0 .. n_batches-1; returns the summed loss
        contributions (one float64 read back)."""
        self.acc.copy_to_device(self._zero)
        T, R = tile(), reg_block()
        epoch_kernel, phase_kernel = kernels(T, R)
        args = self._args(n_rows, solver, hyper, alpha, apply_out)
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
                    epoch_kernel[grid, (T, T)](self._table(table), int(n_batches), *args)
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

    def _table(self, table):
        key = table.tobytes()
        d = self._grids.get(("table", key))
        if d is None:
            d = self._grids[("table", key)] = cuda.to_device(table)
        return d

    def _persistent_grid(self, kernel, table, args, blocks, mode):
        """Blocks of the persistent grid, or 0 when the fallback must run."""
        if _FALLBACK_REASON and mode == "auto":
            return 0
        key = (table.tobytes(), tile(), reg_block(), int(MAX_BLOCKS))
        grid = self._grids.get(key)
        if grid is None:
            T = tile()
            try:
                most = cooperative_blocks(kernel, (self._table(table), 1) + args, (T, T))
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


def _fill(buf, a, room):
    """Device array ``buf`` with ``a`` copied into its start; a new one of max(len(a), room)
    entries when ``buf`` is too short."""
    n = a.shape[0]
    if buf.shape[0] < n:
        buf = cuda.device_array(max(n, int(room)), dtype=buf.dtype)
    if n:
        buf[:n].copy_to_device(a)
    return buf


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
