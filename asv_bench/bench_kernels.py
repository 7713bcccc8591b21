"""The kernels one by one, on the shapes of a training batch.

CPU: the ``@njit`` kernels of ``fastmlp.backends.cpu`` called directly (what
the compiled epoch calls), plus the ``fastmlp.ops`` wrappers around them.
The CUDA backend has no standalone kernels (its phases run inside one fused
launch), so the CUDA cases are skipped here; ``bench_estimators`` times it.
``setup`` runs every kernel once, so numba's
compilation is never timed.
"""

import numpy as np

from fastmlp._registry import ACTIVATIONS, RELU

from .common import BACKENDS, DTYPES, require

ROWS = [256, 4096]
ACTIVATION_NAMES = ["relu", "logistic", "tanh", "elu"]


class _Cpu:
    def __init__(self):
        from fastmlp.backends.cpu import activations, dense, losses, optimizers

        self.act, self.dense, self.loss, self.opt = activations, dense, losses, optimizers

    @staticmethod
    def put(a):
        return a

    @staticmethod
    def sync():
        pass

    def bias_act_forward(self, Z, b, code, slopes, H):
        self.act.bias_act_forward(Z, b, code, 1.0, slopes, H)

    def act_backward(self, dH, Z, H, code, slopes, dZ):
        self.act.act_backward(dH, Z, H, code, 1.0, slopes, dZ)

    def softmax_cross_entropy(self, O, y, sw, P, dO):
        self.loss.softmax_cross_entropy(O, y, sw, 1.0 / O.shape[0], P, dO)

    def dense_forward(self, X, W, b, Z, argmax):
        self.dense.dense_forward(X, W, b, RELU, 0.0, b, 1, Z, Z, argmax)

    def dense_backward(self, X, W, dZ, dW, db, dX):
        self.dense.dense_backward(X, W, dZ, 1e-4, dW, db, dX)

    def adam_step(self, theta, grad, m, v):
        self.opt.adam_step(theta, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 10.0)


def kernels(backend):
    require(backend)
    if backend != "cpu":
        # the CUDA backend has no standalone kernels: its phases run inside one
        # fused epoch or predict launch, which bench_estimators times
        raise NotImplementedError("CUDA kernels run only inside the fused epoch")
    return _Cpu()


class Activations:
    """Fused bias + activation forward, and the activation's backward, on (rows, 256)."""

    params = (BACKENDS, DTYPES, ROWS, ACTIVATION_NAMES)
    param_names = ["backend", "dtype", "rows", "activation"]

    def setup(self, backend, dtype, rows, activation):
        self.k = kernels(backend)
        rng = np.random.default_rng(0)
        m = 256
        self.code = ACTIVATIONS[activation].code
        Z = rng.standard_normal((rows, m)).astype(dtype)
        self.Z, self.H = self.k.put(Z), self.k.put(np.empty_like(Z))
        self.b = self.k.put(np.zeros(m, dtype=dtype))  # zero bias: Z is unchanged by each call
        self.slopes = self.k.put(np.full(m, 0.25, dtype=dtype))
        self.dH = self.k.put(rng.standard_normal((rows, m)).astype(dtype))
        self.dZ = self.k.put(np.empty_like(Z))
        self.time_forward(backend, dtype, rows, activation)
        self.time_backward(backend, dtype, rows, activation)

    def time_forward(self, backend, dtype, rows, activation):
        self.k.bias_act_forward(self.Z, self.b, self.code, self.slopes, self.H)
        self.k.sync()

    def time_backward(self, backend, dtype, rows, activation):
        self.k.act_backward(self.dH, self.Z, self.H, self.code, self.slopes, self.dZ)
        self.k.sync()


class SoftmaxCrossEntropy:
    """Fused softmax + cross-entropy + gradient of (rows, classes) logits."""

    params = (BACKENDS, DTYPES, ROWS, [10, 100])
    param_names = ["backend", "dtype", "rows", "classes"]

    def setup(self, backend, dtype, rows, classes):
        self.k = kernels(backend)
        rng = np.random.default_rng(0)
        O = (3 * rng.standard_normal((rows, classes))).astype(dtype)
        self.O = self.k.put(O)
        self.y = self.k.put(rng.integers(0, classes, rows).astype(np.int64))
        self.sw = self.k.put(np.zeros(0, dtype=dtype))
        self.P, self.dO = self.k.put(np.empty_like(O)), self.k.put(np.empty_like(O))
        self.time_softmax_cross_entropy(backend, dtype, rows, classes)

    def time_softmax_cross_entropy(self, backend, dtype, rows, classes):
        self.k.softmax_cross_entropy(self.O, self.y, self.sw, self.P, self.dO)
        self.k.sync()


class Dense:
    """One dense relu layer (fan_in -> 256): forward (GEMM + fused epilogue) and backward."""

    params = (BACKENDS, DTYPES, ROWS, [40, 784])
    param_names = ["backend", "dtype", "rows", "fan_in"]

    def setup(self, backend, dtype, rows, fan_in):
        self.k = kernels(backend)
        rng = np.random.default_rng(0)
        fan_out = 256
        X = rng.standard_normal((rows, fan_in)).astype(dtype)
        W = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype)
        self.X, self.W = self.k.put(X), self.k.put(W)
        self.b = self.k.put(np.zeros(fan_out, dtype=dtype))
        self.Z = self.k.put(np.empty((rows, fan_out), dtype=dtype))
        self.argmax = self.k.put(np.zeros((0, fan_out), dtype=np.int32))
        self.dZ = self.k.put(rng.standard_normal((rows, fan_out)).astype(dtype))
        self.dW, self.db = self.k.put(np.empty_like(W)), self.k.put(np.empty(fan_out, dtype=dtype))
        self.dX = self.k.put(np.empty_like(X))
        self.time_forward(backend, dtype, rows, fan_in)
        self.time_backward(backend, dtype, rows, fan_in)

    def time_forward(self, backend, dtype, rows, fan_in):
        self.k.dense_forward(self.X, self.W, self.b, self.Z, self.argmax)
        self.k.sync()

    def time_backward(self, backend, dtype, rows, fan_in):
        self.k.dense_backward(self.X, self.W, self.dZ, self.dW, self.db, self.dX)
        self.k.sync()

    def track_forward_gflops(self, backend, dtype, rows, fan_in):
        import time

        reps = 20
        tic = time.perf_counter()
        for _ in range(reps):
            self.k.dense_forward(self.X, self.W, self.b, self.Z, self.argmax)
        self.k.sync()
        return 2.0 * rows * fan_in * 256 * reps / (time.perf_counter() - tic) / 1e9

    track_forward_gflops.unit = "GFLOP/s"


class Adam:
    """One Adam step over a flat parameter vector."""

    params = (BACKENDS, DTYPES, [15_000, 235_000])
    param_names = ["backend", "dtype", "n_params"]

    def setup(self, backend, dtype, n_params):
        self.k = kernels(backend)
        rng = np.random.default_rng(0)
        self.theta = self.k.put(rng.standard_normal(n_params).astype(dtype))
        self.grad = self.k.put(rng.standard_normal(n_params).astype(dtype))
        self.m = self.k.put(np.zeros(n_params, dtype=dtype))
        self.v = self.k.put(np.zeros(n_params, dtype=dtype))
        self.time_adam_step(backend, dtype, n_params)

    def time_adam_step(self, backend, dtype, n_params):
        self.k.adam_step(self.theta, self.grad, self.m, self.v)
        self.k.sync()


class Ops:
    """The public ``fastmlp.ops`` wrappers (validation + allocation + kernel), CPU only."""

    params = (["cpu"], DTYPES, ROWS)
    param_names = ["backend", "dtype", "rows"]

    def setup(self, backend, dtype, rows):
        require(backend)
        from fastmlp import ops

        self.ops = ops
        rng = np.random.default_rng(0)
        self.Z = rng.standard_normal((rows, 256)).astype(dtype)
        self.O = rng.standard_normal((rows, 10)).astype(dtype)
        self.y = rng.integers(0, 10, rows)
        self.time_relu(backend, dtype, rows)
        self.time_softmax_cross_entropy(backend, dtype, rows)

    def time_relu(self, backend, dtype, rows):
        self.ops.relu(self.Z)

    def time_softmax_cross_entropy(self, backend, dtype, rows):
        self.ops.softmax_cross_entropy(self.O, self.y)
