"""The CUDA backend against the NumPy reference and its CPU twin.

Runs in numba's CUDA simulator where there is no GPU (the conftests set
NUMBA_ENABLE_CUDASIM=1 before numba is imported), and on a real GPU with
FASTMLP_REAL_GPU=1.  The simulator runs every GPU thread as a Python thread
and cooperative grids with one block only, so the launches are tiny: 3 x 3
thread blocks (9 threads: every block reduction runs on a block size that is
not a power of two), forward tiles of 6 x 6 (register block 2), backward
tiles of 3 x 3, at most 3 blocks for the per-phase fallback driver; every
multi-tile, tile-loop and ragged-edge path runs on inputs of a few dozen
elements.
"""

import inspect
import os
import pickle
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import numba.cuda  # noqa: E402,F401  (numba-cuda is in the test extra)
import fastmlp.backends.cuda as cb  # noqa: E402

from numba import cuda  # noqa: E402

from fastmlp import MLPClassifier, MLPRegressor, _config  # noqa: E402
from fastmlp._registry import ADAM, OUTPUTS, SGD  # noqa: E402
from fastmlp.backends import cpu as cpu_backend  # noqa: E402
from fastmlp.backends import get_backend  # noqa: E402
from fastmlp.backends.cuda import _common, train as g_train  # noqa: E402
from fastmlp.backends.layout import A_OFF, ADAM_T, UNITS, OptimizerState, make_layout  # noqa: E402

try:  # tests/ is a rootdir-relative path entry, not a package
    import reference as ref
except ImportError:  # pragma: no cover
    from tests import reference as ref

if not cb.is_available():  # pragma: no cover - only without simulator and GPU
    pytest.skip(f"CUDA backend unavailable: {cb.unavailable_reason()}", allow_module_level=True)

CUDA_DIR = Path(cb.__file__).parent


@pytest.fixture(autouse=True, scope="module")
def tiny_launches():
    """3 x 3 blocks, 6 x 6 forward tiles, at most 3 blocks; fast thread switching."""
    mp = pytest.MonkeyPatch()
    mp.setattr(_config, "CUDA_TILE", 3)
    mp.setattr(_config, "CUDA_REGISTER_BLOCK", 2)
    mp.setattr(_common, "MAX_BLOCKS", 3)
    old = sys.getswitchinterval()
    if cb.is_simulated():
        # the simulator's block manager spins on the GIL; switching often
        # makes syncthreads-heavy kernels ~10x faster
        sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)
    mp.undo()


@pytest.fixture(params=["persistent", "launches"])
def drv(request, monkeypatch, config):
    """Each driver in turn (and no fallback state left from another test)."""
    config(CUDA_EPOCH_DRIVER=request.param)
    monkeypatch.setattr(g_train, "_FALLBACK_REASON", [])
    return request.param


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


# --------------------------------------------------------------------------- interface, names


def test_backend_interface_matches():
    for attr in ("name", "is_available", "Trainer", "FullBatch", "predict", "loss_grad"):
        assert hasattr(cb, attr) and hasattr(cpu_backend, attr), attr
        assert attr in cb.__all__
    for attr in ("predict", "loss_grad"):
        assert inspect.signature(getattr(cb, attr)) == inspect.signature(getattr(cpu_backend, attr))
    for cls in ("Trainer", "FullBatch"):
        for meth in ("__init__", "__call__", "epoch", "snapshot", "finish"):
            c, g = getattr(cpu_backend, cls), getattr(cb, cls)
            if hasattr(c, meth) and meth in vars(c):
                assert inspect.signature(getattr(g, meth)) == inspect.signature(getattr(c, meth))


def test_cuda_code_imports_codes_and_columns():
    """No literal activation/output codes and no second copy of the layout names."""
    for path in CUDA_DIR.glob("*.py"):
        src = path.read_text()
        assert not re.search(r"^_?[A-Z_]+ = [0-9]\s*$", src, re.M), path.name  # a one-digit code
        assert "range(11)" not in src and "range(7)" not in src, path.name
        assert not re.search(r"code == [0-9]|out_code == [0-9]|solver == [0-9]", src), path.name


def test_every_public_cuda_function_is_documented_in_the_package():
    """The package docstring names each module; nothing test-only stays (mirrors are gone)."""
    import importlib

    for mod in ("activations", "losses", "dense", "sparse", "optimizers", "train"):
        assert f"``{mod}.py``" in cb.__doc__
        m = importlib.import_module(f"fastmlp.backends.cuda.{mod}")
        for gone in ("dense_forward", "dense_backward", "hidden_backward", "forward_batch",
                     "train_epoch", "bias_act_forward_parallel", "softmax_rows_parallel"):
            assert not hasattr(m, gone), (mod, gone)


# --------------------------------------------------------------------------- tile schedule


def _cover(shape, edge, origin_of, n_tiles, grid):
    """How often each element of ``shape`` is written when ``grid`` blocks walk n_tiles."""
    seen = np.zeros(shape, dtype=np.int64)
    for block in range(grid):
        for t in range(block, n_tiles, grid):
            r0, c0 = origin_of(t)
            seen[r0:r0 + edge, c0:c0 + edge] += 1
    return seen


@pytest.mark.parametrize("grid", range(1, 8))
@pytest.mark.parametrize("rows,cols,edge", [(1, 1, 3), (7, 5, 3), (19, 17, 6), (3, 16, 4),
                                            (256, 10, 32), (5, 2, 6)])
def test_tile_schedule_covers_every_output_once(grid, rows, cols, edge):
    ta = _common.tiles_along
    tiles_x = ta(cols, edge)
    n = tiles_x * ta(rows, edge)
    seen = _cover((rows, cols), edge, lambda t: _common.tile_origin(t, tiles_x, edge), n, grid)
    assert (seen == 1).all()


@pytest.mark.parametrize("grid", range(1, 8))
@pytest.mark.parametrize("m,fi,zc,T", [(7, 5, 4, 3), (1, 1, 1, 2), (10, 13, 3, 4), (3, 8, 9, 3)])
def test_backward_schedule_covers_dW_and_dH_once(grid, m, fi, zc, T):
    ta = _common.tiles_along
    wx, ix = ta(zc, T), ta(fi, T)
    n_w = wx * ta(fi, T)
    n_in = ix * ta(m, T)
    seen_w = np.zeros((fi, zc), np.int64)
    seen_h = np.zeros((m, fi), np.int64)
    for block in range(grid):
        for t in range(block, n_w + n_in, grid):
            kind, r0, c0 = _common.backward_tile(t, n_w, wx, ix, T)
            (seen_w if kind == 0 else seen_h)[r0:r0 + T, c0:c0 + T] += 1
    assert (seen_w == 1).all() and (seen_h == 1).all()


@pytest.mark.parametrize("grid", range(1, 8))
@pytest.mark.parametrize("n,nt", [(1, 9), (17, 9), (100, 6), (64, 256)])
def test_grid_stride_covers_every_element_once(grid, n, nt):
    seen = np.zeros(n, np.int64)
    for block in range(grid):
        for tid in range(nt):
            for i in range(block * nt + tid, n, grid * nt):  # the loop of every elementwise phase
                seen[i] += 1
    assert (seen == 1).all()


@pytest.mark.parametrize("grid", range(1, 6))
@pytest.mark.parametrize("n,cols,nt", [(1, 1, 9), (7, 3, 4), (5, 17, 4), (40, 6, 9),
                                       (3, 1000, 7), (64, 10, 256)])
def test_cell_walk_is_the_divided_grid_stride_loop(grid, n, cols, nt):
    """``cells`` / ``next_cell`` (the elementwise phases' walk over an n x cols grid, with
    no division a step) visit, for every thread, the cells that t // cols, t % cols over
    ``range(g, n * cols, stride)`` gives, in that order."""
    stride = grid * nt
    for g in range(stride):
        want = [divmod(t, cols) for t in range(g, n * cols, stride)]
        got = []
        i, j, di, dj = _common.cells(g, stride, cols)
        while i < n:
            got.append((i, j))
            i, j = _common.next_cell(i, j, di, dj, cols)
        assert got == want, (g, stride)


def test_quot_is_floor_division_below_2_31():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**31, 2000)
    b = rng.integers(1, 2**31, 2000)
    b[:500] = rng.integers(1, 300, 500)
    assert [int(_common.quot(x, y)) for x, y in zip(a, b)] == list(a // b)
    assert _common.quot(2**31 - 1, 1) == 2**31 - 1 and _common.quot(0, 7) == 0


def test_phase_blocks_cover_each_phase():
    spec = _spec("maxout", 0, hidden=(7, 4))
    table = g_train.schedule(spec.layers, spec.code, True)
    blocks = g_train.phase_blocks(spec.layers, table, 10, 5, 3, spec.n_params, 3, 2)
    assert len(blocks) == len(table) and min(blocks) >= 1
    kinds = [int(k) for k, _ in table]
    assert kinds[0] == g_train.GATHER and kinds[-1] == g_train.STEP
    assert kinds.count(g_train.MAXOUT_FWD) == 2 and kinds.count(g_train.HIDDEN_BWD) == 2


# --------------------------------------------------------------------------- block reduction


@cuda.jit
def _reduce_poisoned(vals, out):
    """block_sum_add over a shared buffer whose unused entries hold NaN."""
    buf = cuda.shared.array(64, dtype=np.float64)
    tid = cuda.threadIdx.x + cuda.threadIdx.y * cuda.blockDim.x
    if tid == 0:
        for i in range(64):
            buf[i] = np.nan
    cuda.syncthreads()
    _common.block_sum_add(buf, vals[tid], 2.0, out)


@pytest.mark.parametrize("block", [6, 5, 7, (3, 3), (2, 3), 8, 1])
def test_block_sum_add_any_block_size(rng, block):
    nt = block if isinstance(block, int) else block[0] * block[1]
    vals = rng.uniform(1.0, 2.0, nt)
    out = cuda.to_device(np.array([0.5]))
    _reduce_poisoned[1, block](cuda.to_device(vals), out)
    assert out.copy_to_host()[0] == pytest.approx(0.5 + 2.0 * vals.sum(), rel=1e-14)


# --------------------------------------------------------------------------- helpers


def _spec(act, out_code, dtype=np.float64, n_features=5, hidden=(6, 5), n_out=3):
    param = {"leaky_relu": 0.05, "elu": 0.7}.get(act, 0.0)
    return make_layout(n_features, hidden, n_out, act, param, 3, out_code, dtype)


def _theta(spec, rng):
    theta = rng.normal(scale=0.5, size=spec.n_params).astype(spec.dtype)
    for r in spec.layers:
        if r[A_OFF] >= 0:  # prelu slopes
            theta[r[A_OFF]:r[A_OFF] + r[UNITS]] = rng.uniform(0.1, 0.4, r[UNITS])
    return theta


def _targets(rng, out_code, n, k, dtype, multilabel=True):
    if out_code == OUTPUTS["softmax"]:
        return np.zeros((0, k), dtype), rng.integers(0, k, n).astype(np.int64)
    if out_code == OUTPUTS["logistic"]:
        Y = rng.integers(0, 2, (n, k if multilabel else 1))
    elif out_code == OUTPUTS["exp"]:
        Y = rng.poisson(1.5, (n, k))
    else:
        Y = rng.normal(size=(n, k))
    return Y.astype(dtype), np.zeros(0, np.int64)


def _problem(rng, act, out, n, weighted, multilabel=True, hidden=(6, 5)):
    out_code = OUTPUTS[out]
    k = 3 if (out_code != OUTPUTS["logistic"] or multilabel) else 1
    spec = _spec(act, out_code, hidden=hidden, n_out=k)
    X = rng.normal(size=(n, 5))
    Y, y = _targets(rng, out_code, n, k, np.float64, multilabel)
    sw = rng.uniform(0.2, 2.0, n) if weighted else np.zeros(0)
    return spec, X, Y, y, sw


def _opt(theta, solver, nesterov=True):
    return OptimizerState.new(solver, theta, learning_rate=0.01,
                              momentum=0.8, nesterov=nesterov, beta_1=0.85, beta_2=0.99,
                              epsilon=1e-7)


def _reference_epoch(spec, theta, X, Y, y, sw, order, cap, opt, alpha):
    """(total, theta, state1, state2, t): one epoch from tests/reference.py's loss and
    optimizer steps, the gradient from the CPU backend (as tests/test_kernels.py does)."""
    th, s1, s2 = theta.copy(), opt.state1.copy(), opt.state2.copy()
    h = opt.hyper
    t = float(h[ADAM_T])
    total = 0.0
    # the trainers report scikit-learn's squared error, averaged over the k outputs (its
    # gradient, and network_loss, follow their sum); the L2 term is not averaged
    k_loss = spec.n_outputs if spec.out_code == OUTPUTS["identity"] else 1
    for start in range(0, len(order), cap):
        idx = order[start:start + cap]
        Yb = Y[idx] if Y.shape[0] else Y
        yb = y[idx] if y.shape[0] else y
        swb = sw[idx] if sw.shape[0] else sw
        data = ref.network_loss(spec, th, X[idx], Yb, yb, swb, 0.0)
        l2 = ref.network_loss(spec, th, X[idx], Yb, yb, swb, alpha) - data
        total += (data / k_loss + l2) * len(idx)
        _, g = cpu_backend.loss_grad(spec, th, X[idx], Yb, yb, swb, alpha)
        if opt.solver == SGD:
            th, s1 = ref.sgd_step(th, g, s1, h[0], h[1], h[2] != 0)
        else:
            t += 1
            th, s1, s2 = ref.adam_step(th, g, s1, s2, h[0], h[3], h[4], h[5], t)
    return total, th, s1, s2, t


# --------------------------------------------------------------------------- training epochs

# every activation, every output/loss (logistic binary and multilabel), sgd classical,
# sgd nesterov and adam, with and without sample weights
EPOCHS = [
    ("identity", "identity", "sgd", False),
    ("logistic", "logistic", "adam", True),      # multilabel
    ("tanh", "softmax", "nesterov", False),
    ("relu", "softmax", "adam", True),
    ("leaky_relu", "exp", "adam", False),
    ("prelu", "logistic-binary", "nesterov", True),
    ("elu", "identity", "adam", True),
    ("maxout", "softmax", "sgd", True),
    ("maxout", "exp", "nesterov", False),
    ("prelu", "softmax", "adam", False),
]


@pytest.mark.parametrize("act,out,solver,weighted", EPOCHS)
def test_persistent_epoch_matches_reference_and_cpu(rng, monkeypatch, act, out, solver,
                                                    weighted, config):
    config(CUDA_EPOCH_DRIVER="persistent")
    binary = out == "logistic-binary"
    spec, X, Y, y, sw = _problem(rng, act, "logistic" if binary else out, 13, weighted,
                                 multilabel=not binary)
    theta = _theta(spec, rng)
    solver_code = ADAM if solver == "adam" else SGD
    cap, alpha = 5, 0.01
    runs = {}
    for be in (cpu_backend, cb):
        th = theta.copy()
        opt = _opt(th, solver_code, nesterov=solver == "nesterov")
        tr = be.Trainer(spec, X, Y, y, sw, cap, th, opt, alpha)
        orders = [np.random.default_rng(e).permutation(13) for e in range(2)]
        losses = [tr.epoch(o) for o in orders]
        runs[be.name] = (losses, tr.finish().copy(), opt, tr)
    g_losses, g_theta, g_opt, g_tr = runs["cuda"]
    assert g_tr.last_driver == "persistent"
    c_losses, c_theta, c_opt, _ = runs["cpu"]
    assert _rel(c_losses, g_losses) < 1e-6 and _rel(c_theta, g_theta) < 1e-6
    assert _rel(c_opt.state1, g_opt.state1) < 1e-6
    assert g_opt.hyper[ADAM_T] == c_opt.hyper[ADAM_T] == (6 if solver_code == ADAM else 0)
    # the first epoch against the NumPy reference
    opt0 = _opt(theta.copy(), solver_code, nesterov=solver == "nesterov")
    total, th1, _, _, _ = _reference_epoch(spec, theta, X, Y, y, sw,
                                           np.random.default_rng(0).permutation(13), cap,
                                           opt0, alpha)
    assert g_losses[0] == pytest.approx(total, rel=1e-9)


@pytest.mark.parametrize("act,out", [("relu", "softmax"), ("maxout", "identity"),
                                     ("prelu", "logistic")])
def test_fallback_driver_matches_reference(rng, monkeypatch, act, out, config):
    config(CUDA_EPOCH_DRIVER="launches")
    spec, X, Y, y, sw = _problem(rng, act, out, 11, True)
    theta = _theta(spec, rng)
    order = rng.permutation(11)
    th = theta.copy()
    opt = _opt(th, ADAM)
    tr = cb.Trainer(spec, X, Y, y, sw, 4, th, opt, 0.02)
    total = tr.epoch(order)
    assert tr.last_driver == "launches"
    want, th_ref, m_ref, v_ref, t = _reference_epoch(spec, theta, X, Y, y, sw, order, 4,
                                                     _opt(theta.copy(), ADAM), 0.02)
    tr.finish()
    assert total == pytest.approx(want, rel=1e-9)
    np.testing.assert_allclose(th, th_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(opt.state1, m_ref, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(opt.state2, v_ref, rtol=1e-9, atol=1e-16)
    assert opt.hyper[ADAM_T] == t == 3


def test_float32_epoch_close_to_cpu(rng, drv):
    spec = _spec("tanh", 0, dtype=np.float32)
    X = rng.normal(size=(12, 5)).astype(np.float32)
    _, y = _targets(rng, 0, 12, 3, np.float32)
    Y, sw = np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
    theta = _theta(spec, rng)
    out = []
    for be in (cpu_backend, cb):
        th = theta.copy()
        tr = be.Trainer(spec, X, Y, y, sw, 5, th, _opt(th, ADAM), 0.0)
        out.append((tr.epoch(np.arange(12)), tr.finish().copy()))
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-5)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- simulator threads
# numba's simulator created a launch's shared arrays with an unlocked check-then-set,
# so two threads of one block could get different "shared" arrays (see
# tests/cudasim_fix.py).  It showed as rare parity failures, mostly of
# the maxout fallback driver.  These tests widen the race window the way a loaded
# machine does (a GIL switch inside the allocation) and switch threads every
# microsecond; without the fix they fail on nearly every run.


class _SlowEmpty:
    """numpy, except that ``empty`` first sleeps (releasing the GIL): every thread
    that reaches a shared-array allocation at the same time then races for it."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(*args, **kwargs):
        time.sleep(2e-4)
        return np.empty(*args, **kwargs)


@pytest.fixture
def thread_stress(monkeypatch):
    """A thread switch every microsecond and a GIL release inside each shared-array allocation."""
    if not cb.is_simulated():  # pragma: no cover - real GPU run
        pytest.skip("simulator threads only")
    from numba.cuda.simulator import kernelapi

    import cudasim_fix as _simulator

    monkeypatch.setattr(kernelapi, "np", _SlowEmpty())
    monkeypatch.setattr(_simulator, "np", _SlowEmpty())
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@cuda.jit
def _shared_seen(seed, out):
    """Thread 0 writes ``seed`` into three shared arrays; every thread reads them back."""
    cuda.syncthreads()  # all threads reach the allocations together
    a = cuda.shared.array(4, dtype=np.float64)
    b = cuda.shared.array((2, 3), dtype=np.float32)
    c = cuda.shared.array(5, dtype=np.int64)
    tid = cuda.threadIdx.x + cuda.threadIdx.y * cuda.blockDim.x
    if tid == 0:
        a[0] = seed
        b[1, 2] = seed
        c[4] = seed
    cuda.syncthreads()
    out[cuda.blockIdx.x, tid] = a[0] + b[1, 2] + c[4]


def test_simulator_fix_is_installed():
    if not cb.is_simulated():  # pragma: no cover - real GPU run
        pytest.skip("simulator only")
    from numba.cuda.simulator.kernelapi import FakeCUDAShared

    import cudasim_fix as _simulator

    assert FakeCUDAShared.array is _simulator._locked_array
    assert _simulator.install() is True  # idempotent


@pytest.mark.parametrize("block", [(3, 3), (4, 2), 5])
def test_simulated_shared_arrays_are_one_per_block(thread_stress, block):
    nt = block if isinstance(block, int) else block[0] * block[1]
    for seed in range(1, 4):
        out = np.zeros((2, nt))
        _shared_seen[2, block](float(seed), out)
        assert (out == 3 * seed).all(), (seed, out)


@pytest.mark.parametrize("driver,blocks", [("launches", 1), ("launches", 3), ("persistent", 1)])
def test_maxout_epoch_matches_cpu_under_thread_stress(rng, monkeypatch, thread_stress, driver,
                                                     blocks, config):
    """The case of the rare failures: a maxout epoch (every phase kind, 3 batches) on
    1 or 3 blocks per launch, or the persistent kernel, against the CPU."""
    config(CUDA_EPOCH_DRIVER=driver)
    monkeypatch.setattr(_common, "MAX_BLOCKS", blocks)
    spec, X, Y, y, sw = _problem(rng, "maxout", "identity", 11, True)
    theta = _theta(spec, rng)
    order = rng.permutation(11)
    out = []
    for be in (cpu_backend, cb):
        th = theta.copy()
        opt = _opt(th, ADAM)
        tr = be.Trainer(spec, X, Y, y, sw, 4, th, opt, 0.02)
        out.append((tr.epoch(order), tr.finish().copy(), opt.state2.copy()))
    assert tr.last_driver == driver
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-12)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(out[1][2], out[0][2], rtol=1e-10, atol=1e-16)


# --------------------------------------------------------------------------- launches


@pytest.fixture
def launches(monkeypatch):
    """Count kernel launches (simulator only: its one kernel context per launch)."""
    if not cb.is_simulated():  # pragma: no cover - real GPU run
        pytest.skip("launches are counted in the simulator")
    import numba.cuda.simulator.kernel as simk

    count = [0]
    real = simk._push_kernel_context

    def counting(mod):
        count[0] += 1
        return real(mod)

    monkeypatch.setattr(simk, "_push_kernel_context", counting)
    return count


@pytest.mark.parametrize("n_batches", [1, 50])
def test_persistent_launches_do_not_grow_with_batches(rng, monkeypatch, launches, n_batches, config):
    config(CUDA_EPOCH_DRIVER="persistent")
    spec = _spec("relu", 0, n_features=3, hidden=(2,), n_out=2)
    n = 50
    X = rng.normal(size=(n, 3))
    _, y = _targets(rng, 0, n, 2, np.float64)
    theta = _theta(spec, rng)
    tr = cb.Trainer(spec, X, np.zeros((0, 2)), y, np.zeros(0), n // n_batches, theta,
                    _opt(theta, ADAM), 0.0)
    before = launches[0]
    for _ in range(2):
        tr.epoch(rng.permutation(n))
    per_epoch = (launches[0] - before) / 2
    assert per_epoch <= 1, per_epoch


def test_fallback_launches_one_kernel_per_phase(rng, monkeypatch, launches, config):
    config(CUDA_EPOCH_DRIVER="launches")
    spec = _spec("relu", 0, n_features=3, hidden=(2,), n_out=2)
    X = rng.normal(size=(6, 3))
    _, y = _targets(rng, 0, 6, 2, np.float64)
    theta = _theta(spec, rng)
    tr = cb.Trainer(spec, X, np.zeros((0, 2)), y, np.zeros(0), 2, theta, _opt(theta, SGD), 0.0)
    before = launches[0]
    tr.epoch(np.arange(6))
    assert launches[0] - before == 3 * len(tr.table)


def test_predict_is_one_launch_per_chunk(rng, monkeypatch, launches, config):
    config(CUDA_EPOCH_DRIVER="persistent")
    config(PREDICT_CHUNK_ROWS=4)
    spec = _spec("elu", 0, hidden=(4, 3))
    before = launches[0]
    cb.predict(spec, _theta(spec, rng), rng.normal(size=(9, 5)), True)
    assert launches[0] - before == 3


def test_auto_falls_back_when_the_cooperative_grid_is_refused(rng, monkeypatch, config):
    config(CUDA_EPOCH_DRIVER="auto")
    monkeypatch.setattr(g_train, "_FALLBACK_REASON", [])

    def refuse(*a, **k):
        raise RuntimeError("cooperative launch not supported")

    monkeypatch.setattr(g_train, "cooperative_blocks", refuse)
    spec, X, Y, y, sw = _problem(rng, "tanh", "softmax", 9, False)
    theta = _theta(spec, rng)
    tr = cb.Trainer(spec, X, Y, y, sw, 4, theta.copy(), _opt(theta, SGD), 0.0)
    with pytest.warns(RuntimeWarning, match="cooperative launch not supported"):
        total = tr.epoch(np.arange(9))
    assert tr.last_driver == "launches"
    want = _reference_epoch(spec, theta, X, Y, y, sw, np.arange(9), 4, _opt(theta, SGD), 0.0)[0]
    assert total == pytest.approx(want, rel=1e-9)
    config(CUDA_EPOCH_DRIVER="persistent")
    with pytest.raises(RuntimeError, match="cooperative"):
        tr.epoch(np.arange(9))
    config(CUDA_EPOCH_DRIVER="sometimes")
    with pytest.raises(ValueError, match="CUDA_EPOCH_DRIVER"):
        tr.epoch(np.arange(9))


# --------------------------------------------------------------------------- predict, sums


@pytest.mark.parametrize("apply_out", [False, True])
@pytest.mark.parametrize("act,out", [("relu", "softmax"), ("maxout", "logistic"),
                                     ("prelu", "exp"), ("leaky_relu", "identity")])
def test_predict_in_chunks_matches_reference(rng, monkeypatch, drv, apply_out, act, out, config):
    config(PREDICT_CHUNK_ROWS=7)
    spec = _spec(act, OUTPUTS[out])
    theta = _theta(spec, rng)
    X = rng.normal(size=(17, 5))
    got = cb.predict(spec, theta, X, apply_out)
    assert got.shape == (17, 3) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref.network_predict(spec, theta, X, apply_out),
                               rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got, cpu_backend.predict(spec, theta, X, apply_out), rtol=1e-12,
                               atol=1e-13)


@pytest.mark.parametrize("act,out,weighted", [("maxout", "softmax", True),
                                              ("prelu", "logistic", False),
                                              ("elu", "exp", True), ("tanh", "identity", False)])
def test_full_batch_sums_match_cpu_and_reference(rng, monkeypatch, drv, act, out, weighted, config):
    config(FULL_BATCH_CHUNK_ROWS=4)  # 11 rows: chunks 4, 4, 3
    spec, X, Y, y, sw = _problem(rng, act, out, 11, weighted)
    theta = _theta(spec, rng)
    g_grad, c_grad = np.full_like(theta, np.nan), np.full_like(theta, np.nan)
    g_loss = cb.FullBatch(spec, X, Y, y, sw)(theta, g_grad)
    c_loss = cpu_backend.FullBatch(spec, X, Y, y, sw)(theta, c_grad)
    assert isinstance(g_loss, float)
    assert g_loss == pytest.approx(c_loss, rel=1e-12)
    np.testing.assert_allclose(g_grad, c_grad, rtol=1e-10, atol=1e-13)
    wsum = sw.sum() if weighted else 11.0
    assert g_loss == pytest.approx(ref.network_loss(spec, theta, X, Y, y, sw, 0.0) * wsum,
                                   rel=1e-12)
    # a second call with other parameters reuses the device data
    theta2 = theta * 0.5
    cb_fb = cb.FullBatch(spec, X, Y, y, sw)
    cb_fb(theta, g_grad)
    l2 = cb_fb(theta2, g_grad)
    assert l2 == pytest.approx(cpu_backend.FullBatch(spec, X, Y, y, sw)(theta2, c_grad), rel=1e-12)
    np.testing.assert_allclose(g_grad, c_grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("act,out,weighted", [("maxout", "softmax", True), ("tanh", "identity", False)])
def test_loss_grad_matches_cpu_and_finite_differences(rng, act, out, weighted):
    spec, X, Y, y, sw = _problem(rng, act, out, 9, weighted, hidden=(4,))
    theta = _theta(spec, rng)
    loss_g, grad_g = cb.loss_grad(spec, theta, X, Y, y, sw, 0.03)
    loss_c, grad_c = cpu_backend.loss_grad(spec, theta, X, Y, y, sw, 0.03)
    assert loss_g == pytest.approx(loss_c, rel=1e-12)
    np.testing.assert_allclose(grad_g, grad_c, rtol=1e-10, atol=1e-13)
    assert loss_g == pytest.approx(ref.network_loss(spec, theta, X, Y, y, sw, 0.03), rel=1e-12)
    h = 1e-6
    for i in rng.choice(spec.n_params, 6, replace=False):
        e = np.zeros_like(theta)
        e[i] = h
        # of the exact objective (stable, unclipped): the gradient is its gradient
        fd = (ref.network_loss(spec, theta + e, X, Y, y, sw, 0.03, clip=False)
              - ref.network_loss(spec, theta - e, X, Y, y, sw, 0.03, clip=False)) / (2 * h)
        assert grad_g[i] == pytest.approx(fd, rel=1e-5, abs=1e-8)


# --------------------------------------------------------------------------- trainer behaviour


def test_trainer_moves_data_once_and_keeps_optimizer_state(rng, monkeypatch, drv):
    """Epochs send only the order and scales; finish() writes theta and the Adam moments back."""
    spec, X, Y, y, sw = _problem(rng, "relu", "softmax", 20, True)
    theta0 = _theta(spec, rng)
    tc, tg = theta0.copy(), theta0.copy()
    oc, og = _opt(tc, ADAM), _opt(tg, ADAM)
    cpu_tr = cpu_backend.Trainer(spec, X, Y, y, sw, 8, tc, oc, 0.01)
    gpu_tr = cb.Trainer(spec, X, Y, y, sw, 8, tg, og, 0.01)
    orders = [rng.permutation(20) for _ in range(2)]
    assert np.isclose(gpu_tr.epoch(orders[0]), cpu_tr.epoch(orders[0]), rtol=1e-12)

    calls = []
    for fn in ("to_device", "device_array", "device_array_like"):
        real = getattr(cuda, fn)
        monkeypatch.setattr(cuda, fn, lambda *a, _r=real, _f=fn, **k: calls.append(_f) or _r(*a, **k))
    assert np.isclose(gpu_tr.epoch(orders[1]), cpu_tr.epoch(orders[1]), rtol=1e-12)
    assert calls == [], "an epoch allocated or sent data beyond the order and scales"
    monkeypatch.undo()

    assert og.hyper[ADAM_T] == oc.hyper[ADAM_T] == 6.0  # 3 Adam steps per epoch
    np.testing.assert_allclose(gpu_tr.snapshot(), cpu_tr.snapshot(), rtol=1e-10)
    out = gpu_tr.finish()
    assert out is tg
    np.testing.assert_allclose(tg, cpu_tr.finish(), rtol=1e-10)
    np.testing.assert_allclose(og.state1, oc.state1, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(og.state2, oc.state2, rtol=1e-10, atol=1e-18)


def test_batch_whose_rows_all_weigh_zero_contributes_nothing(rng):
    spec, X, Y, y, sw = _problem(rng, "tanh", "softmax", 10, True)
    sw[:4] = 0.0
    theta = _theta(spec, rng)
    res = []
    for be in (cpu_backend, cb):
        th = theta.copy()
        tr = be.Trainer(spec, X, Y, y, sw, 4, th, _opt(th, ADAM), 0.01)
        res.append((tr.epoch(np.arange(10)), tr.finish()))
    assert np.isfinite(res[1][0])
    np.testing.assert_allclose(res[1][0], res[0][0], rtol=1e-12)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=1e-10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_epoch_reports_an_overflow_as_the_cpu_does(rng):
    """A loss that overflows does not stop the epoch (as in scikit-learn): the total is
    not finite, and the weights are the CPU epoch's."""
    spec = _spec("relu", OUTPUTS["identity"], n_out=1)
    theta = _theta(spec, rng)
    X = rng.normal(size=(8, 5)) * 1e200
    Y = rng.normal(size=(8, 1))
    out = []
    for be in (cb, cpu_backend):
        tr = be.Trainer(spec, X, Y, np.zeros(0, np.int64), np.zeros(0), 4, theta.copy(),
                        _opt(theta, SGD), 0.0)
        out.append((tr.epoch(np.arange(8)), tr.finish()))
    assert not np.isfinite(out[0][0]) and not np.isfinite(out[1][0])
    np.testing.assert_array_equal(np.isnan(out[0][1]), np.isnan(out[1][1]))


# --------------------------------------------------------------------------- estimators


def _data(rng, task, n=40, d=5):
    X = rng.normal(size=(n, d))
    if task == "multiclass":
        y = rng.integers(0, 3, n)
    elif task == "binary":
        y = np.where(X[:, 0] + 0.5 * rng.normal(size=n) > 0, "yes", "no")
    elif task == "poisson":
        y = rng.poisson(np.exp(0.3 * X[:, 1]))
    else:
        y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)
    return X, y


def _estimator(task, backend, **kw):
    base = dict(hidden_layer_sizes=(6, 5), batch_size=16, max_iter=3, random_state=0,
                dtype="float64", tol=0.0, n_iter_no_change=1000, backend=backend,
                learning_rate_init=0.01)
    base.update(kw)
    if task in ("multiclass", "binary"):
        return MLPClassifier(**base)
    if task == "poisson":
        return MLPRegressor(loss="poisson", **base)
    return MLPRegressor(**base)


def _assert_same_model(a, b):
    for name in ("coefs_", "intercepts_"):
        for x, z in zip(getattr(a, name), getattr(b, name)):
            assert _rel(x, z) < 1e-6, name
    if hasattr(a, "prelu_alphas_"):
        for x, z in zip(a.prelu_alphas_, b.prelu_alphas_):
            assert _rel(x, z) < 1e-6
    assert _rel(a.loss_curve_, b.loss_curve_) < 1e-6
    assert a.n_iter_ == b.n_iter_


def _fit_both(rng, task, **kw):
    X, y = _data(rng, task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = _estimator(task, "cpu", **kw).fit(X, y)
        b = _estimator(task, "cuda", **kw).fit(X, y)
    return X, y, a, b


PARITY = [
    ("logistic", "binary", "adam"),
    ("leaky_relu", "poisson", "sgd"),
    ("maxout", "multiclass", "adam"),
]


@pytest.mark.parametrize("act,task,solver", PARITY)
def test_estimator_parity_cpu_vs_cuda(rng, act, task, solver):
    X, y, a, b = _fit_both(rng, task, activation=act, solver=solver)
    _assert_same_model(a, b)
    if task in ("multiclass", "binary"):
        assert _rel(a.predict_proba(X), b.predict_proba(X)) < 1e-6
        np.testing.assert_array_equal(a.predict(X), b.predict(X))
    else:
        assert _rel(a.predict(X), b.predict(X)) < 1e-6


def test_early_stopping_on_cuda(rng):
    _, _, a, b = _fit_both(rng, "multiclass", early_stopping=True, validation_fraction=0.25)
    _assert_same_model(a, b)
    assert len(b.validation_scores_) == 3
    np.testing.assert_allclose(b.validation_scores_, a.validation_scores_, rtol=1e-12)


def test_partial_fit_on_cuda_continues_like_cpu(rng):
    X, y = _data(rng, "multiclass")
    models = []
    for backend in ("cpu", "cuda"):
        m = _estimator("multiclass", backend)
        m.partial_fit(X[:20], y[:20], classes=[0, 1, 2])
        m.partial_fit(X[20:], y[20:])
        models.append(m)
    _assert_same_model(*models)
    assert models[1]._opt_state.hyper[ADAM_T] == models[0]._opt_state.hyper[ADAM_T] == 4


def test_sample_weight_and_class_weight_on_cuda(rng):
    X, y = _data(rng, "multiclass")
    sw = rng.uniform(0.2, 3.0, X.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pair = [_estimator("multiclass", be, max_iter=2, class_weight="balanced").fit(X, y, sw)
                for be in ("cpu", "cuda")]
        _assert_same_model(*pair)


def test_models_pickle_across_backends(rng):
    X, y = _data(rng, "binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fit_on, predict_on in (("cuda", "cpu"), ("cpu", "cuda")):
            m = _estimator("binary", fit_on, max_iter=1, activation="prelu").fit(X, y)
            want = m.predict_proba(X)
            m2 = pickle.loads(pickle.dumps(m))
            m2.set_params(backend=predict_on)
            assert _rel(m2.predict_proba(X), want) < 1e-6
            np.testing.assert_array_equal(m2.predict(X), m.predict(X))


# --------------------------------------------------------------------------- availability


def test_is_available_is_quick_and_explained():
    t = time.perf_counter()
    assert cb.is_available() is True
    assert time.perf_counter() - t < 5.0
    assert isinstance(cb.unavailable_reason(), str) and cb.unavailable_reason()


def test_cuda_without_gpu_raises_and_suggests_cpu(monkeypatch):
    monkeypatch.setattr(cb, "is_available", lambda: False)
    monkeypatch.setattr(cb, "unavailable_reason", lambda: "no NVIDIA driver")
    with pytest.raises(RuntimeError, match='no NVIDIA driver.*backend="cpu"'):
        get_backend("cuda")
    assert get_backend("auto") is cpu_backend
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(RuntimeError, match="backend=\"cpu\""):
        MLPClassifier(backend="cuda", max_iter=1).fit(X, y)


def test_missing_numba_cuda_is_a_clear_error(monkeypatch):
    import fastmlp.backends as backends

    def broken():
        raise ImportError("No module named 'numba.cuda'")

    monkeypatch.setattr(backends, "_cuda_module", broken)
    with pytest.raises(RuntimeError, match=r"fastmlp\[cuda\].*backend=\"cpu\""):
        get_backend("cuda")
    assert get_backend("auto") is cpu_backend
    assert backends.available_backends() == ["cpu"]
    # a driver present but numba-cuda missing: "auto" tries the import and takes the CPU
    monkeypatch.setattr(backends, "cuda_simulated", lambda: False)
    monkeypatch.setattr(backends, "_cuda_driver_found", lambda: True)
    assert get_backend("auto") is cpu_backend


def test_cuda_driver_probe(monkeypatch):
    import ctypes

    import fastmlp.backends as backends

    tried = []

    def missing(path, *a, **k):
        tried.append(path)
        raise OSError(f"{path}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    monkeypatch.setattr(ctypes, "WinDLL", missing, raising=False)
    assert backends._cuda_driver_found.__wrapped__() is False
    assert tried and all("cuda" in p for p in tried)
    monkeypatch.setattr(ctypes, "CDLL", lambda path, *a, **k: object())
    monkeypatch.setattr(ctypes, "WinDLL", lambda path, *a, **k: object(), raising=False)
    assert backends._cuda_driver_found.__wrapped__() is True


def test_auto_without_a_driver_does_not_import_numba_cuda():
    # a fresh process without the simulator: with no driver library, "auto" is the
    # CPU and numba-cuda is never imported (its import alone costs ~0.9 s)
    code = (
        "import sys\n"
        "from fastmlp.backends import _cuda_driver_found, cpu, get_backend\n"
        "assert get_backend('auto') is cpu\n"
        "print(_cuda_driver_found(), 'numba.cuda' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    found, imported = out.stdout.split()
    if found == "False":
        assert imported == "False"
    else:  # pragma: no cover - a machine with an NVIDIA driver: the full probe runs
        assert imported == "True"


def test_auto_never_picks_the_simulator():
    if cb.is_simulated():
        assert get_backend("auto") is cpu_backend
        assert get_backend("cuda") is cb
    else:  # pragma: no cover - real GPU run
        assert get_backend("auto") is cb
