"""The training epoch and the chunked forward pass on NVIDIA GPUs.

The twins of ``fastmlp/backends/cpu/train.py``, on the same flat buffers:
``theta``/``grad``/optimizer state are 1-D device arrays, the batch
buffers live in the float workspace ``ws`` and the integer workspace ``iws``
(device arrays) at the column offsets of the ``layers`` table, a buffer of
``c`` columns at offset ``o`` being ``ws[o * cap : (o + c) * cap]`` viewed
as (rows, c).  ``layers`` itself stays on the host: it only decides which
views and launches to make.

A kernel cannot call a kernel, so the CPU's one compiled epoch becomes a
host loop that launches, per batch: the gather of the batch rows, one fused
GEMM per layer forward, the fused loss, per layer the weight-gradient GEMM
(+ bias gradient + L2) and the input-gradient GEMM (+ act'), and one fused
optimizer step; all on one stream, so in order, with no host round trip.
The batch losses (times rows) are accumulated on the device into one
float64 scalar that is read once per epoch.

The device views of each batch size are made once (``Plan``) and reused;
nothing is allocated per batch.
"""

import numpy as np
from numba import cuda

from ._common import grid_1d, grid_tiles, reg_block, tile
from .activations import act_backward, maxout_backward, maxout_forward, prelu_slope_grad
from .dense import gemm_kernels
from .losses import output_activation, output_loss
from .optimizers import adam_step, sgd_step

# columns of the `layers` table (as cpu/train.py)
W_OFF, FAN_IN, ZCOLS, B_OFF, A_OFF, UNITS, Z_OFF, H_OFF, DZ_OFF, DH_OFF, ARG_OFF = range(11)
# entries of the float64 `hyper` array (as cpu/train.py)
LR, MOMENTUM, NESTEROV, BETA1, BETA2, EPS, ADAM_T = range(7)

_PRELU = 5
_MAXOUT = 7


def _view(buf, col_off, cap, rows, cols):
    start = int(col_off) * cap
    return buf[start:start + rows * cols].reshape((rows, cols))


class _Layer:
    """Views and launch grids of one dense layer for batches of m rows."""

    __slots__ = ("fi", "zc", "units", "W", "b", "slopes", "dW", "db", "dslopes",
                 "Z", "H", "A", "dZ", "dH", "g_fwd", "g_w", "g_in")


class Plan:
    """Device views of one network for batches of ``m`` rows, made once and reused.

    theta, grad: 1-D device arrays (grad may be None: forward only).
    ws, iws: device workspaces of ``cap`` rows; T: GEMM tile edge.
    """

    def __init__(self, layers, code, theta, grad, ws, iws, cap, m, T):
        self.m = m
        self.T = T
        self.R = reg_block()
        self.code = int(code)
        L = layers.shape[0]
        self.layers = []
        for l in range(L):
            r = layers[l]
            v = _Layer()
            fi, zc, units = int(r[FAN_IN]), int(r[ZCOLS]), int(r[UNITS])
            v.fi, v.zc, v.units = fi, zc, units
            wo, bo, ao = int(r[W_OFF]), int(r[B_OFF]), int(r[A_OFF])
            v.W = theta[wo:wo + fi * zc].reshape((fi, zc))
            v.b = theta[bo:bo + zc]
            # slopes: the prelu vector, or any (zc,) array for the other codes
            v.slopes = theta[ao:ao + units] if ao >= 0 else v.b
            if grad is not None:
                v.dW = grad[wo:wo + fi * zc].reshape((fi, zc))
                v.db = grad[bo:bo + zc]
                v.dslopes = grad[ao:ao + units] if ao >= 0 else None
            hidden = l < L - 1
            v.Z = _view(ws, r[Z_OFF], cap, m, zc)
            v.H = _view(ws, r[H_OFF], cap, m, units)
            v.dZ = _view(ws, r[DZ_OFF], cap, m, zc)
            v.dH = _view(ws, r[DH_OFF], cap, m, units)
            v.A = _view(iws, r[ARG_OFF], cap, m, units) if (hidden and code == _MAXOUT) else None
            v.g_fwd = grid_tiles(m, zc, T, self.R)
            v.g_w = grid_tiles(fi, zc, T)
            v.g_in = grid_tiles(m, fi, T)
            self.layers.append(v)


def _forward(plan, Xb, param, pieces):
    """Forward pass of plan.m rows through the planned views; returns the logits view."""
    fwd = gemm_kernels(plan.T, plan.R)[0]
    code = plan.code
    param = float(param)
    L = len(plan.layers)
    Hprev = Xb
    for l in range(L):
        v = plan.layers[l]
        grid, block = v.g_fwd
        if l == L - 1:
            # output layer: logits only, the loss kernel applies the output function
            fwd[grid, block](Hprev, v.W, v.b, 0, 0.0, v.b, True, v.Z, v.Z)
            return v.Z
        if code == _MAXOUT:
            fwd[grid, block](Hprev, v.W, v.b, 0, 0.0, v.b, False, v.Z, v.Z)
            blocks, tpb = grid_1d(plan.m * v.units)
            maxout_forward[blocks, tpb](v.Z, v.b, int(pieces), v.H, v.A)
        else:
            fwd[grid, block](Hprev, v.W, v.b, code, param, v.slopes, True, v.Z, v.H)
        Hprev = v.H
    return Hprev


def _loss_grad(plan, Xb, Yb, yb, swb, param, pieces, out_code, scale, lam,
               loss_scale, l2_scale, loss_acc):
    """Forward, fused loss and backward of one batch: the gradient lands in plan's grad views.

    loss_acc[0] += loss_scale * sum_i w_i l_i + l2_scale * sum of squared weights.
    """
    _, wk, ik = gemm_kernels(plan.T)
    code = plan.code
    param = float(param)
    lam = float(lam)
    l2_scale = float(l2_scale)
    m = plan.m
    L = len(plan.layers)
    O = _forward(plan, Xb, param, pieces)
    dO = plan.layers[L - 1].dZ
    output_loss(out_code, O, Yb, yb, swb, scale, dO, dO, loss_scale, loss_acc)
    fuse = code != _PRELU and code != _MAXOUT
    for l in range(L - 1, -1, -1):
        v = plan.layers[l]
        Hprev = Xb if l == 0 else plan.layers[l - 1].H
        grid, block = v.g_w
        wk[grid, block](Hprev, v.dZ, v.W, lam, v.dW, v.db, l2_scale, loss_acc)
        if l == 0:
            break
        p = plan.layers[l - 1]
        grid, block = v.g_in
        if fuse:
            # dZ(l-1) = (dZ(l) W^T) * act'(cache) in one kernel
            ik[grid, block](v.dZ, v.W, code, param, p.Z, p.H, p.b, True, p.dZ)
            continue
        ik[grid, block](v.dZ, v.W, 0, 0.0, p.dH, p.dH, p.b, False, p.dH)
        n_el = m * p.units
        if code == _MAXOUT:
            blocks, tpb = grid_1d(n_el)
            maxout_backward[blocks, tpb](p.dH, p.A, int(pieces), p.dZ)
        else:  # prelu: slope gradient from dH first, then dZ in place of dH
            blocks, tpb = grid_1d(p.units)
            prelu_slope_grad[blocks, tpb](p.dH, p.Z, p.dslopes)
            blocks, tpb = grid_1d(n_el)
            act_backward[blocks, tpb](p.dH, p.Z, p.H, code, param, p.slopes, p.dZ)


@cuda.jit
def gather_batch(X, Y, y, sw, order, start, m, Xb, Yb, yb, swb):
    """Rows order[start : start + m] of X (and Y, y, sw where not empty) into the batch buffers.

    X: (n, d) on the device, order: (n_order,) int64 on the device; Xb: (cap, d),
    Yb: (cap, k) or empty, yb, swb: (cap,) or empty.  Grid-stride over m*d.
    """
    g = cuda.grid(1)
    stride = cuda.gridsize(1)
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


class EpochRunner:
    """The per-batch launch sequence of one fit, over buffers already on the device.

    Holds the device data (X, Y, y, sw), parameters, gradient, optimizer
    state, workspaces, batch buffers, a float64 loss accumulator and an
    ``order`` buffer; the ``Plan`` of each batch size is made on first use.
    ``allocate`` builds one from host arrays (what the Trainer does, once).
    """

    def __init__(self, layers, code, param, pieces, out_code, X, Y, y, sw, cap,
                 theta, grad, state1, state2, ws, iws, Xb, Yb, yb, swb):
        self.layers = layers
        self.code, self.param, self.pieces = int(code), float(param), int(pieces)
        self.out_code = int(out_code)
        self.cap = int(cap)
        self.T = tile()
        self.X, self.Y, self.y, self.sw = X, Y, y, sw
        self.theta, self.grad, self.state1, self.state2 = theta, grad, state1, state2
        self.ws, self.iws = ws, iws
        self.Xb, self.Yb, self.yb, self.swb = Xb, Yb, yb, swb
        self.acc = cuda.to_device(np.zeros(1, dtype=np.float64))
        self.order = cuda.device_array(0, dtype=np.int64)
        self._zero = np.zeros(1, dtype=np.float64)
        self._plans = {}

    @classmethod
    def allocate(cls, spec, X, Y, y, sw, cap, theta, state1, state2):
        """Copy the host arrays to the device once and allocate every buffer of the fit."""
        dt = spec.dtype
        d = X.shape[1]
        d_theta = cuda.to_device(theta)
        return cls(
            spec.layers, spec.code, spec.param, spec.pieces, spec.out_code,
            cuda.to_device(X), cuda.to_device(Y), cuda.to_device(y), cuda.to_device(sw), cap,
            d_theta, cuda.device_array_like(d_theta), cuda.to_device(state1),
            cuda.to_device(state2),
            cuda.device_array(max(spec.ws_cols, 1) * cap, dtype=dt),
            cuda.device_array(max(spec.iws_cols, 1) * cap, dtype=np.int32),
            cuda.device_array((cap, d), dtype=dt),
            cuda.device_array((cap if Y.shape[0] else 0, Y.shape[1]), dtype=dt),
            cuda.device_array(cap if y.shape[0] else 0, dtype=np.int64),
            cuda.device_array(cap if sw.shape[0] else 0, dtype=dt),
        )

    def plan(self, m):
        """(Plan, Xb, Yb, yb, swb) for batches of m rows: the views, made on first use."""
        p = self._plans.get(m)
        if p is None:
            plan = Plan(self.layers, self.code, self.theta, self.grad, self.ws, self.iws,
                        self.cap, m, self.T)

            def rows(buf):  # the first m rows, or the empty buffer as it is
                return buf[:m] if buf.shape[0] else buf

            p = (plan, self.Xb[:m], rows(self.Yb), rows(self.yb), rows(self.swb))
            self._plans[m] = p
        return p

    def epoch(self, order, alpha, solver, hyper, wsums):
        """One epoch over ``order`` (host int64); returns sum of batch loss x rows (one sync).

        wsums: host float64 sum of the sample weights of each batch, or None.
        Reads the learning rate etc. from the host ``hyper`` and updates
        hyper[ADAM_T] there.
        """
        n = order.shape[0]
        if self.order.shape[0] != n:
            self.order = cuda.device_array(n, dtype=np.int64)
        self.order.copy_to_device(order)
        self.acc.copy_to_device(self._zero)
        cap = self.cap
        has_w = self.sw.shape[0] > 0
        alpha = float(alpha)
        lr = float(hyper[LR])
        momentum = float(hyper[MOMENTUM])
        nesterov = bool(hyper[NESTEROV] != 0.0)
        beta1, beta2, eps = float(hyper[BETA1]), float(hyper[BETA2]), float(hyper[EPS])
        t = float(hyper[ADAM_T])
        opt_blocks, opt_tpb = grid_1d(self.theta.shape[0])
        width = max(self.X.shape[1], self.Y.shape[1])
        for bi, start in enumerate(range(0, n, cap)):
            m = min(cap, n - start)
            plan, Xb, Yb, yb, swb = self.plan(m)
            blocks, tpb = grid_1d(m * width)
            gather_batch[blocks, tpb](self.X, self.Y, self.y, self.sw, self.order,
                                      start, m, self.Xb, self.Yb, self.yb, self.swb)
            wsum = float(wsums[bi]) if has_w else float(m)
            # a batch whose rows all weigh 0 (possible with class_weight) contributes nothing
            scale = 1.0 / wsum if wsum > 0 else 0.0
            lam = alpha * scale
            _loss_grad(plan, Xb, Yb, yb, swb, self.param, self.pieces, self.out_code,
                       scale, lam, scale * m, 0.5 * lam * m, self.acc)
            if solver == 0:
                sgd_step[opt_blocks, opt_tpb](self.theta, self.grad, self.state1, lr,
                                              momentum, nesterov)
            else:
                t += 1.0
                adam_step[opt_blocks, opt_tpb](self.theta, self.grad, self.state1, self.state2,
                                               lr, beta1, beta2, eps, t)
        hyper[ADAM_T] = t
        return float(self.acc.copy_to_host()[0])


def batch_weight_sums(sw, order, cap):
    """Host float64 sums of the sample weights of each batch of ``order`` (None without weights)."""
    if sw.shape[0] == 0:
        return None
    n = order.shape[0]
    return np.add.reduceat(sw[order].astype(np.float64), np.arange(0, n, cap))


# --- the CPU names: the same contracts, on device arrays ---------------------------------


def forward_batch(Xb, theta, layers, code, param, pieces, ws, iws, cap):
    """Forward pass of m = Xb.shape[0] <= cap rows; returns the logits view (m, n_out).

    theta, ws, iws: device arrays; layers: the host table.
    """
    plan = Plan(layers, code, theta, None, ws, iws, cap, Xb.shape[0], tile())
    return _forward(plan, Xb, param, pieces)


def loss_grad_batch(Xb, Yb, yb, swb, theta, grad, layers, code, param, pieces,
                    out_code, alpha, ws, iws, cap, wsum=None):
    """Loss and full gradient (into ``grad``, a device array) of one batch on the device.

    loss = sum_i w_i l_i / W + alpha / (2 W) * sum of squared weights, W = sum_i w_i.
    W is the host scalar ``wsum`` (when not given it is computed from swb,
    one more copy).  Returns the loss as a float (one device-to-host copy).
    """
    m = Xb.shape[0]
    if wsum is None:
        wsum = float(swb.copy_to_host().astype(np.float64).sum()) if swb.shape[0] else float(m)
    scale = 1.0 / wsum if wsum > 0 else 0.0  # rows that all weigh 0 contribute nothing
    lam = float(alpha) * scale
    acc = cuda.to_device(np.zeros(1, dtype=np.float64))
    plan = Plan(layers, code, theta, grad, ws, iws, cap, m, tile())
    _loss_grad(plan, Xb, Yb, yb, swb, param, pieces, out_code, scale, lam, scale, 0.5 * lam, acc)
    return float(acc.copy_to_host()[0])


def train_epoch(X, Y, y, sw, order, theta, grad, layers, code, param, pieces,
                out_code, alpha, solver, state1, state2, hyper, ws, iws, cap,
                Xb, Yb, yb, swb):
    """One epoch of minibatch training on the device (the CPU twin's arguments).

    X, Y, y, sw, theta, grad, state1, state2, ws, iws, Xb, Yb, yb, swb: device
    arrays; order: host int64; hyper: host float64 (hyper[ADAM_T] updated).
    Returns sum over batches of batch_loss * batch_rows, NaN if not finite.
    The Trainer keeps one ``EpochRunner`` per fit instead, so that the views
    are made once; this function builds one per call.
    """
    runner = EpochRunner(layers, code, param, pieces, out_code, X, Y, y, sw, cap,
                         theta, grad, state1, state2, ws, iws, Xb, Yb, yb, swb)
    order = np.ascontiguousarray(order, dtype=np.int64)
    host_sw = sw.copy_to_host() if sw.shape[0] else np.zeros(0)
    total = runner.epoch(order, alpha, int(solver), hyper,
                         batch_weight_sums(host_sw, order, int(cap)))
    return total if np.isfinite(total) else np.nan


def predict_forward(X, theta, layers, code, param, pieces, out_code, apply_out,
                    ws, iws, cap, out):
    """Forward pass over any number of rows in chunks of ``cap`` rows.

    X: (n, d) host array, sent to the device one chunk at a time; theta, ws,
    iws: device arrays; out: (n, n_out) host array receiving the logits
    (apply_out False) or predictions (True: softmax / sigmoid / identity /
    exp).  Device memory is one chunk's workspace, whatever n is.
    """
    n, d = X.shape
    T = tile()
    Xc = cuda.device_array((cap, d), dtype=ws.dtype)
    plans = {}
    for start in range(0, n, cap):
        stop = min(n, start + cap)
        m = stop - start
        plan = plans.get(m)
        if plan is None:
            plan = plans[m] = Plan(layers, code, theta, None, ws, iws, cap, m, T)
        Xm = Xc[:m]
        Xm.copy_to_device(np.ascontiguousarray(X[start:stop], dtype=ws.dtype))
        O = _forward(plan, Xm, param, pieces)
        if apply_out:
            output_activation(out_code, O, O)
        O.copy_to_host(out[start:stop])
