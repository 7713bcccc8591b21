"""The CUDA backend: ``@cuda.jit`` kernels from numba-cuda, on NVIDIA GPUs.

The same interface as ``fastmlp.backends.cpu`` (``name``, ``is_available``,
``Trainer``, ``FullBatch``, ``predict``, ``loss_grad``) plus
``unavailable_reason`` and ``is_simulated``.  Importing this package without
numba-cuda raises ImportError, which ``fastmlp.backends.get_backend`` turns
into a clear message; ``import fastmlp`` never imports it.

Where the code lives:

``train.py``        the phases of a batch (``schedule``), ``run_phase`` (one phase
                    for the calling block), the two drivers built by ``kernels(T, R)``:
                    the persistent cooperative ``epoch_kernel`` (one launch per epoch
                    or per predict chunk, grid sync between phases) and the
                    fallback ``phase_kernel`` (one launch per phase), and
                    ``Program`` (the device buffers of one network and the choice
                    of driver, ``_config.CUDA_EPOCH_DRIVER``).
``dense.py``        ``gemm_phases(T, R)``: the tiled GEMM phases (forward with bias +
                    activation fused; dW, db, L2 and dH with act' fused).
``sparse.py``       the first layer of a CSR matrix X: ``csr_forward_phase`` (X_b W
                    + b, act fused) and ``csr_backward_phase`` (X_b^T dZ + lam W, db,
                    deterministic without atomics), O(nnz x units) per batch.
``activations.py``  the per-element math of ``backends/scalar.py`` as device functions;
                    the maxout forward and the prelu / maxout backward phases.
``losses.py``       the fused output + loss phase and the prediction output phase.
``optimizers.py``   the SGD / Adam step phase over the flat theta.
``_common.py``      tile size, register block and driver settings (read from
                    ``fastmlp._config`` at call time), the tile schedule and the
                    shared-memory block reduction.

Data movement: a Trainer sends X, Y/y and the sample weights to the device
once; each epoch sends the row order and the per-batch weight scales and
reads back one float64 (the epoch loss).  ``snapshot``/``finish`` copy the
parameters back.  Prediction sends each chunk of rows and reads back its
output.  Dropout sends its per-layer thresholds and scales once; an epoch
passes its key as an argument (and, for a chunk of a sparse X, the rows'
indices in the data), and the masks are computed in the GEMM epilogues.

Sparse X (``TAKES_CSR``): Trainer, FullBatch, predict and loss_grad take a
scipy CSR matrix (of the model's dtype) as X.  It goes to the device as its
three arrays (``csr_rows``: indices and indptr as int64, so that the kernels
have one compiled variant, the dense one's), never densified: the first
layer's phases multiply the rows where they lie (``sparse.py``); predict
sends each chunk's slice of the three arrays.  ``fastmlp._solvers.densify``
still hands over dense rows, a chunk at a time, for a matrix with more than
``_config.SPARSE_DENSIFY_ABOVE`` of its entries non-zero (the threshold
measured on the CPU; denser rows go to the tiled GEMM).

Compilation: the kernels compile on their first launch in a process, per
dtype and network kind (no on-disk cache: they are closures built per tile
size).  ``benchmarks/gpu_check.py --compile-ptx`` compiles them to PTX
without a GPU.
"""

import threading

import numpy as np
import scipy.sparse as sp
from numba import cuda

from ... import _config
from ..._registry import ADAM
from .. import cuda_simulated
from ..layout import ADAM_T, BETA1, BETA2, EPS, LR, MOMENTUM, NESTEROV, unpack
from .optimizers import SUM_GRAD, step_sizes
from .train import Program, epoch_scales, schedule

name = "cuda"

# Trainer, FullBatch, predict and loss_grad take a CSR matrix as X (``sparse.py``); see
# fastmlp._solvers.densify
TAKES_CSR = True

# How long the availability probe may take before the GPU is declared unusable.
_PROBE_TIMEOUT_S = 20.0
_probe_lock = threading.Lock()
_probe_result = None  # (usable, reason) once probed


is_simulated = cuda_simulated  # (defined once, in fastmlp.backends)


@cuda.jit
def _probe_kernel(a):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = 2.0 * i


def _probe():
    """(usable, reason): a driver and device, and a kernel that compiles, runs and syncs."""
    try:
        if not cuda.is_available():
            err = None
            try:
                err = cuda.cuda_error()
            except Exception:  # pragma: no cover
                pass
            err = " ".join(str(err or "").split()).rstrip(":. ")
            return False, f"numba found no CUDA driver or GPU ({err})" if err else \
                "numba found no CUDA driver or GPU"
        if is_simulated():
            return True, "the numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
        a = cuda.device_array(4, dtype=np.float64)
        _probe_kernel[1, 32](a)
        out = a.copy_to_host()
        if not np.array_equal(out, 2.0 * np.arange(4)):
            return False, "a test kernel ran but returned wrong numbers"
        return True, f"GPU {cuda.get_current_device().name!r}"
    except Exception as exc:  # driver, toolkit (NVVM) or device errors
        return False, " ".join(f"{type(exc).__name__}: {exc}".split())


def _probe_once():
    global _probe_result
    with _probe_lock:
        if _probe_result is not None:
            return _probe_result
        box = []
        worker = threading.Thread(target=lambda: box.append(_probe()), daemon=True)
        worker.start()
        worker.join(_PROBE_TIMEOUT_S)
        if box:
            _probe_result = box[0]
        else:
            _probe_result = (False, f"the CUDA driver did not answer within {_PROBE_TIMEOUT_S:.0f} s")
        return _probe_result


def is_available():
    """True when a usable NVIDIA GPU (or numba's CUDA simulator) is present.

    Checks the driver and device, then compiles, launches and reads back a
    tiny kernel (proving the toolkit too); the answer is cached for the
    process and never takes more than about 20 s, even if the driver hangs.
    """
    return _probe_once()[0]


def unavailable_reason():
    """A short reason why ``is_available()`` is False (or what is in use when True)."""
    return _probe_once()[1]


def csr_rows(X, dtype):
    """(data, indices, indptr) of the sparse X (CSR, or anything ``tocsr`` converts) as the
    device takes them: C-contiguous host arrays, data in ``dtype``, indices and indptr
    int64 (whatever X's index type: one compiled variant of the kernels); only the
    ``indptr[-1]`` entries in use.  X is never modified (new arrays, or views of its own)."""
    X = X.tocsr()
    nnz = int(X.indptr[-1])
    return (np.ascontiguousarray(X.data[:nnz], dtype=dtype),
            np.ascontiguousarray(X.indices[:nnz], dtype=np.int64),
            np.ascontiguousarray(X.indptr, dtype=np.int64))


def _dense_or_csr(X, dtype):
    """(X C-contiguous, None) for a dense X; (None, ``csr_rows(X)``) for a sparse one."""
    if sp.issparse(X):
        return None, csr_rows(X, dtype)
    return np.ascontiguousarray(X), None


class Trainer:
    """Holds one fit's device data, parameters, optimizer state and workspaces.

    Built once per fit (once per partial_fit call): X, Y, y and sw go to the
    device here, once, with theta and the optimizer state; every buffer is
    allocated here.  ``epoch`` sends the row order and the batch scales, runs
    the epoch (one launch with the persistent driver) and reads back the epoch
    loss; ``snapshot``/``finish`` copy the parameters back; ``finish`` also
    writes the optimizer state into the host arrays of ``opt`` (so that
    partial_fit continues from it) and theta into the host ``theta``.

    X: (n, d) C-contiguous, spec.dtype, or a CSR matrix (its three arrays go to
    the device; see the module docstring).  Y: (n, k) float targets or (0, k);
    y: (n,) int64 labels or (0,); sw: (n,) weights or (0,).
    opt: ``fastmlp.backends.layout.OptimizerState`` with host arrays (LR is
    read each epoch, ADAM_T advanced each epoch).
    dropout: None or a ``fastmlp.backends.layout.Dropout``; rows: None or (n,) int64
    the index in the training data of each row of X (keys the dropout masks).
    """

    def __init__(self, spec, X, Y, y, sw, batch_size, theta, opt, alpha, dropout=None,
                 rows=None):
        self.spec = spec
        self.cap = int(batch_size)
        self.theta = theta
        self.opt = opt
        self.alpha = float(alpha)
        self.sw_host = np.ascontiguousarray(sw, dtype=np.float64) if sw.shape[0] else None
        X, csr = _dense_or_csr(X, spec.dtype)
        self.prog = Program(spec, self.cap, theta, X, np.ascontiguousarray(Y),
                            np.ascontiguousarray(y), np.ascontiguousarray(sw), opt.state1,
                            opt.state2, csr=csr)
        self.table = schedule(spec.layers, spec.code, True, sparse=csr is not None)
        self.dropout, self.rows = dropout, rows
        if dropout is not None:
            self.prog.set_dropout(*dropout.arrays(spec))

    @property
    def last_driver(self):
        """"persistent" or "launches": the driver that ran the last epoch."""
        return self.prog.last_driver

    def epoch(self, order, index=0):
        """One epoch over the rows in ``order``; returns the summed batch losses x rows
        (inf or NaN when a batch's loss overflowed: the epoch runs on, as on the CPU).
        index: the epoch's number in the fit (keys the dropout masks)."""
        order = np.ascontiguousarray(order, dtype=np.int64)
        n = order.shape[0]
        n_batches = (n + self.cap - 1) // self.cap
        h = self.opt.hyper
        t0 = float(h[ADAM_T])
        steps = step_sizes(self.opt.solver, h[LR], h[BETA1], h[BETA2], t0, n_batches)
        gid, key = None, 0
        if self.dropout is not None:
            key = self.dropout.key(index)
            gid = None if self.rows is None else self.rows[order]
        self.prog.set_epoch(order, epoch_scales(self.sw_host, order, self.cap, n_batches, steps),
                            gid, key)
        hyper = (h[MOMENTUM], h[NESTEROV] != 0.0, h[BETA1], h[BETA2], h[EPS])
        total = self.prog.run(self.table, n_batches, n, solver=self.opt.solver, hyper=hyper,
                              alpha=self.alpha)
        if self.opt.solver == ADAM:
            h[ADAM_T] = t0 + n_batches
        return total

    def snapshot(self):
        """A host copy of the current parameters (for early stopping)."""
        return self.prog.theta.copy_to_host()

    def finish(self):
        """Copy parameters and optimizer state back to the host; return theta (host)."""
        p = self.prog
        p.theta.copy_to_host(self.theta)
        p.state1.copy_to_host(self.opt.state1)
        p.state2.copy_to_host(self.opt.state2)
        return self.theta


class FullBatch:
    """Unnormalised full-batch sums for L-BFGS: the data is placed on the device once.

    ``fb(theta, grad)`` writes ``grad = sum_i w_i dl_i/dtheta`` (a host array
    like theta) and returns ``sum_i w_i l_i`` as a float (w_i = 1 without
    weights; l_i the per-row loss, summed over outputs).  No L2 term and no
    division by the weight sum.  The rows are walked in chunks of
    ``_config.FULL_BATCH_CHUNK_ROWS`` in one
    launch, the chunk gradients summed on the device, so device memory is the
    data plus one chunk's workspace whatever n_samples is.

    X: (n, d) C-contiguous, spec.dtype, or a CSR matrix (the chunks are then
    ranges of its rows).  Y: (n, k) float targets or (0, k);
    y: (n,) int64 labels or (0,); sw: (n,) weights or (0,).  dropout, rows,
    epoch: as the CPU backend's ``FullBatch`` takes them (the masks of ``rows``,
    each row's index in the training data, in epoch number ``epoch``).
    """

    def __init__(self, spec, X, Y, y, sw, dropout=None, rows=None, epoch=0):
        self.spec = spec
        n = X.shape[0]
        self.n = n
        self.cap = max(1, min(n, int(_config.FULL_BATCH_CHUNK_ROWS)))
        self.n_batches = (n + self.cap - 1) // self.cap
        zeros = np.zeros(spec.n_params, dtype=spec.dtype)
        X, csr = _dense_or_csr(X, spec.dtype)
        self.prog = Program(spec, self.cap, zeros, X, np.ascontiguousarray(Y),
                            np.ascontiguousarray(y), np.ascontiguousarray(sw), state1=zeros,
                            csr=csr)
        gid, key = None, 0
        if dropout is not None:
            self.prog.set_dropout(*dropout.arrays(spec))
            gid, key = rows, dropout.key(epoch)
        self.prog.set_epoch(np.arange(n, dtype=np.int64),
                            np.ones((self.n_batches, 3), dtype=np.float64), gid, key)
        self.table = schedule(spec.layers, spec.code, True, sparse=csr is not None)
        self._zeros = zeros

    def __call__(self, theta, grad):
        p = self.prog
        p.theta.copy_to_device(np.ascontiguousarray(theta, dtype=self.spec.dtype))
        p.state1.copy_to_device(self._zeros)  # the sum of the chunk gradients
        loss = p.run(self.table, self.n_batches, self.n, solver=SUM_GRAD)
        grad[:] = p.state1.copy_to_host()
        return float(loss)


def predict(spec, theta, X, apply_out):
    """Logits (apply_out False) or predictions for X (n, d), on the device in bounded memory.

    X is sent in chunks of ``fastmlp._config.PREDICT_CHUNK_ROWS`` rows, each
    run through every layer and the output function in one launch (with the
    persistent driver); device memory is theta plus one chunk's workspace.
    A CSR matrix X: each chunk's slice of its three arrays is sent (the
    largest chunk's non-zeros sized once), never a dense row.
    Returns a host array (n, n_out).
    """
    n = X.shape[0]
    cap = max(1, min(n, int(_config.PREDICT_CHUNK_ROWS)))
    if sp.issparse(X):
        return _predict_csr(spec, theta, X.tocsr(), cap, apply_out)
    prog = Program(spec, cap, theta, None, None, None, None, grad=False)
    table = schedule(spec.layers, spec.code, False)
    out = np.empty((n, spec.n_outputs), dtype=spec.dtype)
    for start in range(0, n, cap):
        stop = min(n, start + cap)
        m = stop - start
        prog.D[:m].copy_to_device(np.ascontiguousarray(X[start:stop], dtype=spec.dtype))
        prog.run(table, 1, m, apply_out=bool(apply_out))
        prog.P[:m].copy_to_host(out[start:stop])
    return out


def _predict_csr(spec, theta, X, cap, apply_out):
    """``predict`` of the CSR matrix X: chunk by chunk, each chunk's rows sent as the
    slices data[a:b], indices[a:b] and indptr[start:stop + 1] - a (a, b = the chunk's
    first and last non-zero), its rows read through the order 0 .. cap - 1."""
    n = X.shape[0]
    dt = spec.dtype
    indptr = np.asarray(X.indptr, dtype=np.int64)
    starts = np.arange(0, n, cap)
    room = int(np.max(indptr[np.minimum(starts + cap, n)] - indptr[starts], initial=0))
    empty = (np.zeros(0, dt), np.zeros(0, np.int64), np.zeros(0, np.int64))
    prog = Program(spec, cap, theta, None, None, None, None, grad=False, csr=empty)
    prog.set_epoch(np.arange(cap, dtype=np.int64), np.ones((1, 3), dtype=np.float64))
    table = schedule(spec.layers, spec.code, False, sparse=True)
    out = np.empty((n, spec.n_outputs), dtype=dt)
    for start in starts:
        stop = min(n, start + cap)
        a, b = int(indptr[start]), int(indptr[stop])
        prog.send_rows(np.ascontiguousarray(X.data[a:b], dtype=dt),
                       np.ascontiguousarray(X.indices[a:b], dtype=np.int64),
                       indptr[start:stop + 1] - a, room)
        prog.run(table, 1, stop - start, apply_out=bool(apply_out))
        prog.P[:stop - start].copy_to_host(out[start:stop])
    return out


def loss_grad(spec, theta, X, Y, y, sw, alpha):
    """Full-batch loss and gradient (a new host array like theta), computed on the device
    (X dense or a CSR matrix, as ``FullBatch`` takes it).

    scikit-learn's objective: (sum_i w_i l_i + alpha / 2 * sum of squared weights) / sum_i w_i.
    """
    n = X.shape[0]
    wsum = float(np.asarray(sw, dtype=np.float64).sum()) if sw.shape[0] else float(n)
    grad = np.empty_like(theta)
    loss = FullBatch(spec, X, Y, y, sw)(theta, grad)
    coefs, _, _ = unpack(spec, theta)
    gcoefs, _, _ = unpack(spec, grad)
    sq = 0.0
    for W, G in zip(coefs, gcoefs):
        sq += float(np.sum(np.asarray(W, dtype=np.float64) ** 2))
        G += alpha * W
    scale = 1.0 / wsum if wsum > 0 else 0.0
    grad *= scale
    return (loss + 0.5 * alpha * sq) * scale, grad


__all__ = ["name", "is_available", "unavailable_reason", "is_simulated", "Trainer",
           "FullBatch", "predict", "loss_grad", "TAKES_CSR"]
