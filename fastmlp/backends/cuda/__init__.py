"""The CUDA backend: ``@cuda.jit`` kernels from numba-cuda, on NVIDIA GPUs.

The same interface as ``fastmlp.backends.cpu`` (``name``, ``is_available``,
``Trainer``, ``predict``, ``loss_grad``) plus ``unavailable_reason``.
Importing this package without numba-cuda raises ImportError, which
``fastmlp.backends.get_backend`` turns into a clear message; ``import
fastmlp`` never imports it.

Where each kernel lives (the CPU twin has the same file and function name
under ``fastmlp/backends/cpu/``):

``activations.py``  device functions ``sigmoid_scalar``, ``act``, ``act_grad``;
                    grid-stride kernels ``bias_act_forward``, ``act_backward``,
                    ``maxout_forward`` (with the argmax cache), ``maxout_backward``;
                    ``prelu_slope_grad`` (a thread per column).
``losses.py``       fused output + loss kernels, a thread per row, the loss
                    reduced per block in shared memory and added atomically:
                    ``softmax_cross_entropy`` (stable), ``sigmoid_binary_cross_entropy``,
                    ``squared_error``, ``poisson_deviance``; ``softmax_rows``,
                    ``log_softmax_rows``, ``one_hot``; host dispatchers
                    ``output_loss``, ``output_activation``.
``dense.py``        ``gemm_kernels(T)``: tiled shared-memory GEMMs Z = H W (bias +
                    activation fused into the store), dW = H^T dZ (bias gradient
                    and L2 term fused) and dH = dZ W^T (act' fused); host functions
                    ``dense_forward``, ``dense_backward``, ``hidden_backward``.
``optimizers.py``   fused grid-stride ``sgd_step`` and ``adam_step`` over the flat theta.
``train.py``        GPU only: ``gather_batch`` (X[order[start:start+m]] into the
                    batch buffers), ``batch_weight_sums`` (host sums of each batch's
                    weights), ``Plan`` (the device views of one batch size) and
                    ``EpochRunner`` (the per-batch launch sequence of a fit); the
                    CPU names ``forward_batch``, ``loss_grad_batch``, ``train_epoch``,
                    ``predict_forward`` on device arrays.
``_common.py``      launch geometry (from ``fastmlp._config`` at call time) and the
                    shared-memory block reduction.

Data movement: a Trainer sends X, Y/y and the sample weights to the device
once; each epoch sends only the row order and reads back one float64 (the
epoch loss).  ``snapshot``/``finish`` copy the parameters back.

Compilation: each kernel compiles on its first launch in a process, per
dtype (no on-disk cache: the GEMMs are closures built per tile size, and
the loss kernels call a device function of ``_common.py``, which numba's
cache would not see change).  ``benchmarks/gpu_check.py --compile-ptx``
compiles all of them to PTX without a GPU.
"""

import os
import threading
import warnings

import numpy as np
from numba import cuda
from numba.core.errors import NumbaPerformanceWarning

from ... import _config
from .train import EpochRunner, batch_weight_sums, loss_grad_batch, predict_forward

name = "cuda"

# How long the availability probe may take before the GPU is declared unusable.
_PROBE_TIMEOUT_S = 20.0
_probe_lock = threading.Lock()
_probe_result = None  # (usable, reason) once probed


def is_simulated():
    """True when numba runs CUDA kernels in its Python simulator (NUMBA_ENABLE_CUDASIM=1)."""
    try:
        from numba import config

        return bool(getattr(config, "ENABLE_CUDASIM", 0))
    except ImportError:  # pragma: no cover
        return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


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


class Trainer:
    """Holds one fit's device data, parameters, optimizer state and workspaces.

    Built once per fit (once per partial_fit call): X, Y, y and sw go to the
    device here, once, with theta and the optimizer state; every buffer is
    allocated here.  ``epoch`` sends only ``order`` and reads back the epoch
    loss; ``snapshot``/``finish`` copy the parameters back; ``finish`` also
    writes the optimizer state into the host arrays of ``opt`` (so that
    partial_fit continues from it) and theta into the host ``theta``.

    X: (n, d) C-contiguous, spec.dtype.  Y: (n, k) float targets or (0, k);
    y: (n,) int64 labels or (0,); sw: (n,) weights or (0,).
    opt: ``fastmlp.backends.layout.OptimizerState`` with host arrays (LR is
    read each epoch, ADAM_T updated each epoch).
    """

    def __init__(self, spec, X, Y, y, sw, batch_size, theta, opt, alpha):
        self.spec = spec
        self.cap = int(batch_size)
        self.theta = theta
        self.opt = opt
        self.alpha = float(alpha)
        self.sw_host = np.ascontiguousarray(sw, dtype=np.float64) if sw.shape[0] else None
        self.runner = EpochRunner.allocate(
            spec, np.ascontiguousarray(X), np.ascontiguousarray(Y), np.ascontiguousarray(y),
            np.ascontiguousarray(sw), self.cap, theta, opt.state1, opt.state2)

    def epoch(self, order):
        """One epoch over the rows in ``order``; returns the summed batch losses x rows.

        NaN when the loss is not finite (a diverging fit).
        """
        order = np.ascontiguousarray(order, dtype=np.int64)
        wsums = None
        if self.sw_host is not None:
            wsums = batch_weight_sums(self.sw_host, order, self.cap)
        o = self.opt
        with warnings.catch_warnings():
            # small batches launch small grids by design; numba would warn on each
            warnings.simplefilter("ignore", NumbaPerformanceWarning)
            total = self.runner.epoch(order, self.alpha, int(o.solver), o.hyper, wsums)
        return total if np.isfinite(total) else np.nan

    def snapshot(self):
        """A host copy of the current parameters (for early stopping)."""
        return self.runner.theta.copy_to_host()

    def finish(self):
        """Copy parameters and optimizer state back to the host; return theta (host)."""
        r = self.runner
        r.theta.copy_to_host(self.theta)
        r.state1.copy_to_host(self.opt.state1)
        r.state2.copy_to_host(self.opt.state2)
        return self.theta


def _workspaces(spec, cap):
    ws = cuda.device_array(max(spec.ws_cols, 1) * cap, dtype=spec.dtype)
    iws = cuda.device_array(max(spec.iws_cols, 1) * cap, dtype=np.int32)
    return ws, iws


def predict(spec, theta, X, apply_out):
    """Logits (apply_out False) or predictions for X (n, d), on the device in bounded memory.

    X is sent in chunks of ``fastmlp._config.PREDICT_CHUNK_ROWS`` rows; device
    memory is theta plus one chunk's workspace.  Returns a host array (n, n_out).
    """
    n = X.shape[0]
    cap = max(1, min(n, int(_config.PREDICT_CHUNK_ROWS)))
    ws, iws = _workspaces(spec, cap)
    out = np.empty((n, spec.n_outputs), dtype=spec.dtype)
    d_theta = cuda.to_device(np.ascontiguousarray(theta, dtype=spec.dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        predict_forward(X, d_theta, spec.layers, spec.code, spec.param, spec.pieces,
                        spec.out_code, bool(apply_out), ws, iws, cap, out)
    return out


def loss_grad(spec, theta, X, Y, y, sw, alpha):
    """Full-batch loss and gradient (a new host array like theta), computed on the device."""
    n = X.shape[0]
    ws, iws = _workspaces(spec, n)
    d_theta = cuda.to_device(np.ascontiguousarray(theta, dtype=spec.dtype))
    d_grad = cuda.device_array_like(d_theta)
    wsum = float(np.asarray(sw, dtype=np.float64).sum()) if sw.shape[0] else float(n)
    dev = [cuda.to_device(np.ascontiguousarray(a)) for a in (X, Y, y, sw)]
    loss = loss_grad_batch(*dev, d_theta, d_grad, spec.layers, spec.code, spec.param,
                           spec.pieces, spec.out_code, float(alpha), ws, iws, n, wsum=wsum)
    return loss, d_grad.copy_to_host()


__all__ = ["name", "is_available", "unavailable_reason", "is_simulated", "Trainer",
           "predict", "loss_grad"]
