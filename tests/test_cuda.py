"""The CUDA backend against its CPU twin.

Runs in numba's CUDA simulator where there is no GPU (the conftests set
NUMBA_ENABLE_CUDASIM=1 before numba is imported), and on a real GPU with
FASTMLP_REAL_GPU=1.  The simulator runs every GPU thread as a Python thread,
so the launches are kept tiny: 4 x 4 GEMM tiles, 8 threads per block and at
most 3 blocks, which also makes every multi-block, grid-stride, tile-loop
and ragged-edge path run on inputs of a few dozen elements.
"""

import pickle
import sys
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("numba.cuda")
cb = pytest.importorskip("fastmlp.backends.cuda")

from numba import cuda  # noqa: E402

from fastmlp import MLPClassifier, MLPRegressor, _config  # noqa: E402
from fastmlp.backends import cpu as cpu_backend  # noqa: E402
from fastmlp.backends import get_backend  # noqa: E402
from fastmlp.backends.cpu import activations as c_act  # noqa: E402
from fastmlp.backends.cpu import dense as c_dense  # noqa: E402
from fastmlp.backends.cpu import losses as c_loss  # noqa: E402
from fastmlp.backends.cpu import optimizers as c_opt  # noqa: E402
from fastmlp.backends.cuda import _common  # noqa: E402
from fastmlp.backends.cuda import activations as g_act  # noqa: E402
from fastmlp.backends.cuda import dense as g_dense  # noqa: E402
from fastmlp.backends.cuda import losses as g_loss  # noqa: E402
from fastmlp.backends.cuda import optimizers as g_opt  # noqa: E402
from fastmlp.backends.cuda import train as g_train  # noqa: E402
from fastmlp.backends.layout import make_layout  # noqa: E402

if not cb.is_available():  # pragma: no cover - only without simulator and GPU
    pytest.skip(f"CUDA backend unavailable: {cb.unavailable_reason()}", allow_module_level=True)

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=3e-5, atol=3e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
CODES = {"identity": 0, "logistic": 1, "tanh": 2, "relu": 3, "leaky_relu": 4, "prelu": 5,
         "elu": 6, "maxout": 7}


@pytest.fixture(autouse=True, scope="module")
def tiny_launches():
    """Small tiles / blocks / grids; fast thread switching for the simulator."""
    mp = pytest.MonkeyPatch()
    mp.setattr(_config, "CUDA_TILE", 4)
    mp.setattr(_config, "CUDA_REGISTER_BLOCK", 2)  # 8 x 8 output tiles of 4 x 4 threads
    mp.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8)
    mp.setattr(_common, "MAX_BLOCKS", 3)
    old = sys.getswitchinterval()
    if cb.is_simulated():
        # the simulator's block manager spins on the GIL; switching often
        # makes syncthreads-heavy kernels ~10x faster
        sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)
    mp.undo()


def d(a):
    return cuda.to_device(np.ascontiguousarray(a))


def launch(kernel, n, *args):
    blocks, tpb = _common.grid_1d(n)
    kernel[blocks, tpb](*args)


def close(got, want, dtype):
    np.testing.assert_allclose(got, want, **TOL[dtype])


# --------------------------------------------------------------------------- names


def _public(mod):
    names = set()
    for key, val in vars(mod).items():
        if key.startswith("_") or isinstance(val, type) or not callable(val):
            continue
        f = getattr(val, "py_func", val)
        if getattr(f, "__module__", None) == mod.__name__:
            names.add(key)
    return names


GPU_ONLY = {"dense": {"gemm_kernels"}, "train": {"gather_batch", "batch_weight_sums"}}


@pytest.mark.parametrize("module", ["activations", "losses", "dense", "optimizers", "train"])
def test_backends_define_the_same_kernel_names(module):
    import importlib

    cpu_mod = importlib.import_module(f"fastmlp.backends.cpu.{module}")
    gpu_mod = importlib.import_module(f"fastmlp.backends.cuda.{module}")
    cpu_names = _public(cpu_mod)
    gpu_names = _public(gpu_mod)
    assert cpu_names, module
    assert cpu_names == gpu_names - GPU_ONLY.get(module, set())
    # the GPU-only helpers are named in the package docstring
    for extra in GPU_ONLY.get(module, ()):
        assert extra in cb.__doc__


def test_backend_interface_matches():
    for attr in ("name", "is_available", "Trainer", "predict", "loss_grad"):
        assert hasattr(cb, attr) and hasattr(cpu_backend, attr)
    import inspect

    for attr in ("predict", "loss_grad"):
        assert inspect.signature(getattr(cb, attr)) == inspect.signature(getattr(cpu_backend, attr))
    assert (inspect.signature(cb.Trainer.__init__) ==
            inspect.signature(cpu_backend.Trainer.__init__))


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", range(7))
def test_bias_act_forward(rng, dtype, code):
    n, m = 7, 5
    Z = (rng.normal(size=(n, m)) * 2).astype(dtype)
    b = rng.normal(size=m).astype(dtype)
    slopes = rng.uniform(0.1, 0.5, m).astype(dtype)
    Zc, Hc = Z.copy(), np.empty_like(Z)
    c_act.bias_act_forward(Zc, b, code, 0.3, slopes, Hc)
    dZ, dH = d(Z), cuda.device_array((n, m), dtype=dtype)
    launch(g_act.bias_act_forward, n * m, dZ, d(b), code, 0.3, d(slopes), dH)
    close(dZ.copy_to_host(), Zc, dtype)
    close(dH.copy_to_host(), Hc, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", range(7))
def test_act_backward(rng, dtype, code):
    n, m = 6, 5
    Z = rng.normal(size=(n, m)).astype(dtype)
    H = np.empty_like(Z)
    slopes = rng.uniform(0.1, 0.5, m).astype(dtype)
    c_act.bias_act_forward(Z, np.zeros(m, dtype), code, 0.2, slopes, H)
    dH = rng.normal(size=(n, m)).astype(dtype)
    want = np.empty_like(dH)
    c_act.act_backward(dH, Z, H, code, 0.2, slopes, want)
    out = cuda.device_array((n, m), dtype=dtype)
    launch(g_act.act_backward, n * m, d(dH), d(Z), d(H), code, 0.2, d(slopes), out)
    close(out.copy_to_host(), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_slope_grad_and_hidden_backward(rng, dtype):
    n, m = 9, 5
    Z = rng.normal(size=(n, m)).astype(dtype)
    slopes = rng.uniform(0.1, 0.5, m).astype(dtype)
    H = np.where(Z > 0, Z, slopes * Z).astype(dtype)
    dH = rng.normal(size=(n, m)).astype(dtype)
    want = np.empty(m, dtype)
    c_act.prelu_slope_grad(dH, Z, want)
    out = cuda.device_array(m, dtype=dtype)
    launch(g_act.prelu_slope_grad, m, d(dH), d(Z), out)
    close(out.copy_to_host(), want, dtype)
    # hidden_backward, dZ computed in place of dH as the trainer does
    dZ_cpu, ds_cpu = dH.copy(), np.empty(m, dtype)
    c_dense.hidden_backward(dZ_cpu, Z, H, np.zeros((0, m), np.int32), 5, 0.0, slopes, 1,
                            dZ_cpu, ds_cpu)
    g_dH, g_ds = d(dH), cuda.device_array(m, dtype=dtype)
    g_dense.hidden_backward(g_dH, d(Z), d(H), None, 5, 0.0, d(slopes), 1, g_dH, g_ds)
    close(g_dH.copy_to_host(), dZ_cpu, dtype)
    close(g_ds.copy_to_host(), ds_cpu, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxout_forward_backward(rng, dtype):
    n, units, pieces = 7, 4, 3
    Z = rng.normal(size=(n, units * pieces)).astype(dtype)
    b = rng.normal(size=units * pieces).astype(dtype)
    Zc, Hc, Ac = Z.copy(), np.empty((n, units), dtype), np.empty((n, units), np.int32)
    c_act.maxout_forward(Zc, b, pieces, Hc, Ac)
    gZ, gH, gA = d(Z), cuda.device_array((n, units), dtype), cuda.device_array((n, units), np.int32)
    launch(g_act.maxout_forward, n * units, gZ, d(b), pieces, gH, gA)
    close(gZ.copy_to_host(), Zc, dtype)
    close(gH.copy_to_host(), Hc, dtype)
    np.testing.assert_array_equal(gA.copy_to_host(), Ac)
    dH = rng.normal(size=(n, units)).astype(dtype)
    want = np.empty_like(Z)
    c_act.maxout_backward(dH, Ac, pieces, want)
    out = d(np.full_like(Z, np.nan))
    g_dense.hidden_backward(d(dH), gZ, gH, gA, 7, 0.0, None, pieces, out, None)
    close(out.copy_to_host(), want, dtype)


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("out_code", range(4))
def test_output_loss(rng, dtype, weighted, out_code):
    n, k = 11, 3
    O = (rng.normal(size=(n, k)) * 3).astype(dtype)
    y = rng.integers(0, k, n).astype(np.int64)
    if out_code == 1:
        Y = rng.integers(0, 2, (n, k)).astype(dtype)
    elif out_code == 3:
        Y = rng.poisson(2.0, (n, k)).astype(dtype)
    else:
        Y = rng.normal(size=(n, k)).astype(dtype)
    if out_code == 0:
        Y = np.zeros((0, k), dtype)
    else:
        y = np.zeros(0, np.int64)
    sw = rng.uniform(0.5, 2.0, n).astype(dtype) if weighted else np.zeros(0, dtype)
    scale = 1.0 / (sw.sum() if weighted else n)
    P, dO = np.empty_like(O), np.empty_like(O)
    want = c_loss.output_loss(out_code, O, Y, y, sw, scale, P, dO)
    gP, gdO = cuda.device_array((n, k), dtype), cuda.device_array((n, k), dtype)
    acc = d(np.zeros(1))
    g_loss.output_loss(out_code, d(O), d(Y), d(y), d(sw), scale, gP, gdO, 2.0, acc)
    close(gP.copy_to_host(), P, dtype)
    close(gdO.copy_to_host(), dO, dtype)
    np.testing.assert_allclose(acc.copy_to_host()[0], 2.0 * want, rtol=1e-5 if dtype == np.float32
                               else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_stable_and_fused_in_place(rng, dtype):
    O = np.array([[1.0, 2.0, 0.0], [1000.0, 1001.0, 999.0], [-1000.0, -999.0, -1001.0]], dtype)
    y = np.array([1, 0, 2], np.int64)
    g = d(O)
    acc = d(np.zeros(1))
    launch(g_loss.softmax_cross_entropy, 3, d(O), d(y), d(np.zeros(0, dtype)), 1.0, g, g, 1.0, acc)
    P = g.copy_to_host()
    np.testing.assert_allclose(P[0] + np.eye(3)[1], [0.245, 0.665, 0.090], atol=1e-3)
    np.testing.assert_allclose(P[1], P[0] + np.eye(3)[1] - np.eye(3)[0], rtol=1e-5, atol=1e-6)
    assert np.isfinite(acc.copy_to_host()[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_log_softmax_one_hot_output_activation(rng, dtype):
    n, k = 9, 4
    O = (rng.normal(size=(n, k)) * 5).astype(dtype)
    P, L = np.empty_like(O), np.empty_like(O)
    c_loss.softmax_rows(O, P)
    c_loss.log_softmax_rows(O, L)
    gP, gL = cuda.device_array((n, k), dtype), cuda.device_array((n, k), dtype)
    launch(g_loss.softmax_rows, n, d(O), gP)
    launch(g_loss.log_softmax_rows, n, d(O), gL)
    close(gP.copy_to_host(), P, dtype)
    close(gL.copy_to_host(), L, dtype)
    for code in (1, 2, 3):
        want = np.empty_like(O)
        c_loss.output_activation(code, O, want)
        g = d(O)
        g_loss.output_activation(code, g, g)  # in place
        close(g.copy_to_host(), want, dtype)
    labels = rng.integers(0, k, n).astype(np.int64)
    want = np.empty((n, k), dtype)
    c_loss.one_hot(labels, want)
    out = d(np.full((n, k), 7, dtype))
    launch(g_loss.one_hot, n * k, d(labels), out)
    np.testing.assert_array_equal(out.copy_to_host(), want)


# --------------------------------------------------------------------------- dense


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "logistic", "prelu", "maxout"])
def test_dense_forward(rng, dtype, act):
    code = CODES[act]
    n, fi, units = 9, 7, 6
    pieces = 2 if act == "maxout" else 1
    zc = units * pieces
    Hp = rng.normal(size=(n, fi)).astype(dtype)
    W = rng.normal(size=(fi, zc)).astype(dtype)
    b = rng.normal(size=zc).astype(dtype)
    slopes = rng.uniform(0.1, 0.5, units).astype(dtype) if act == "prelu" else b
    Z, H, A = np.empty((n, zc), dtype), np.empty((n, units), dtype), np.empty((n, units), np.int32)
    c_dense.dense_forward(Hp, W, b, code, 0.0, slopes, pieces, Z, H, A)
    gZ, gH = cuda.device_array((n, zc), dtype), cuda.device_array((n, units), dtype)
    gA = cuda.device_array((n, units), np.int32)
    g_dense.dense_forward(d(Hp), d(W), d(b), code, 0.0, d(slopes), pieces, gZ, gH, gA)
    close(gZ.copy_to_host(), Z, dtype)
    close(gH.copy_to_host(), H, dtype)
    if act == "maxout":
        np.testing.assert_array_equal(gA.copy_to_host(), A)


@pytest.mark.parametrize("R", [1, 2, 3])
def test_register_blocked_forward_gemm(rng, R, monkeypatch):
    # more output tiles than blocks (MAX_BLOCKS = 3), edges that are not multiples
    # of the (4 R)-wide tile, K not a multiple of the 4-deep slab
    monkeypatch.setattr(_config, "CUDA_REGISTER_BLOCK", R)
    n, fi, zc = 19, 11, 17
    Hp = rng.normal(size=(n, fi))
    W = rng.normal(size=(fi, zc))
    b = rng.normal(size=zc)
    gZ = cuda.device_array((n, zc), np.float64)
    gA = cuda.device_array((0, zc), np.int32)
    g_dense.dense_forward(d(Hp), d(W), d(b), CODES["identity"], 0.0, d(b), 1, gZ, gZ, gA)
    np.testing.assert_allclose(gZ.copy_to_host(), Hp @ W + b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_dense_backward(rng, dtype, lam):
    n, fi, zc = 10, 7, 5
    Hp = rng.normal(size=(n, fi)).astype(dtype)
    W = rng.normal(size=(fi, zc)).astype(dtype)
    dZ = rng.normal(size=(n, zc)).astype(dtype)
    dW, db, dHp = np.empty_like(W), np.empty(zc, dtype), np.empty_like(Hp)
    sq = c_dense.dense_backward(Hp, W, dZ, lam, dW, db, dHp)
    gdW, gdb, gdHp = (cuda.device_array_like(x) for x in (dW, db, dHp))
    acc = d(np.zeros(1))
    g_dense.dense_backward(d(Hp), d(W), d(dZ), lam, gdW, gdb, gdHp, 1.5, acc)
    close(gdW.copy_to_host(), dW, dtype)
    close(gdb.copy_to_host(), db, dtype)
    close(gdHp.copy_to_host(), dHp, dtype)
    np.testing.assert_allclose(acc.copy_to_host()[0], 1.5 * sq, rtol=1e-5)
    # the first layer: no input gradient
    g_dense.dense_backward(d(Hp), d(W), d(dZ), lam, gdW, gdb, cuda.device_array((0, fi), dtype),
                           1.0, acc)
    close(gdW.copy_to_host(), dW, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_input_gradient_times_act_grad(rng, dtype):
    """The trainer's dZ(l-1) = (dZ(l) W^T) * act'(cache) kernel against the two CPU steps."""
    n, fi, zc = 9, 6, 5
    _, _, ik = g_dense.gemm_kernels(_common.tile())
    Zp = rng.normal(size=(n, fi)).astype(dtype)
    H = np.tanh(Zp).astype(dtype)
    W = rng.normal(size=(fi, zc)).astype(dtype)
    dZ = rng.normal(size=(n, zc)).astype(dtype)
    dHp = (dZ @ W.T).astype(dtype)
    want = np.empty_like(dHp)
    c_act.act_backward(dHp, H, H, 2, 0.0, np.zeros(fi, dtype), want)
    out = cuda.device_array((n, fi), dtype)
    grid, block = _common.grid_tiles(n, fi, _common.tile())
    ik[grid, block](d(dZ), d(W), 2, 0.0, d(H), d(H), d(np.zeros(fi, dtype)), True, out)
    close(out.copy_to_host(), want, dtype)


# --------------------------------------------------------------------------- optimizers, gather


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_step(rng, dtype, nesterov):
    p = 37
    th, g, v = (rng.normal(size=p).astype(dtype) for _ in range(3))
    th_c, v_c = th.copy(), v.copy()
    c_opt.sgd_step(th_c, g, v_c, 0.1, 0.9, nesterov)
    gth, gv = d(th), d(v)
    launch(g_opt.sgd_step, p, gth, d(g), gv, 0.1, 0.9, nesterov)
    close(gth.copy_to_host(), th_c, dtype)
    close(gv.copy_to_host(), v_c, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_step(rng, dtype):
    p = 37
    th, g, m = (rng.normal(size=p).astype(dtype) for _ in range(3))
    v = rng.uniform(0, 1, p).astype(dtype)
    th_c, m_c, v_c = th.copy(), m.copy(), v.copy()
    c_opt.adam_step(th_c, g, m_c, v_c, 0.01, 0.9, 0.999, 1e-8, 3.0)
    gth, gm, gv = d(th), d(m), d(v)
    launch(g_opt.adam_step, p, gth, d(g), gm, gv, 0.01, 0.9, 0.999, 1e-8, 3.0)
    for got, want in ((gth, th_c), (gm, m_c), (gv, v_c)):
        close(got.copy_to_host(), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_batch(rng, dtype):
    n, dim, k, cap = 13, 5, 2, 6
    X = rng.normal(size=(n, dim)).astype(dtype)
    Y = rng.normal(size=(n, k)).astype(dtype)
    y = rng.integers(0, 9, n).astype(np.int64)
    sw = rng.uniform(size=n).astype(dtype)
    order = rng.permutation(n).astype(np.int64)
    bufs = [cuda.device_array((cap, dim), dtype), cuda.device_array((cap, k), dtype),
            cuda.device_array(cap, np.int64), cuda.device_array(cap, dtype)]
    start, m = 9, 4  # the ragged last batch
    launch(g_train.gather_batch, m * dim, d(X), d(Y), d(y), d(sw), d(order), start, m, *bufs)
    rows = order[start:start + m]
    np.testing.assert_array_equal(bufs[0].copy_to_host()[:m], X[rows])
    np.testing.assert_array_equal(bufs[1].copy_to_host()[:m], Y[rows])
    np.testing.assert_array_equal(bufs[2].copy_to_host()[:m], y[rows])
    np.testing.assert_array_equal(bufs[3].copy_to_host()[:m], sw[rows])


# --------------------------------------------------------------------------- backend functions


def _spec(act, out_code, dtype=np.float64, n_features=5, hidden=(6, 5), n_out=3):
    param = {"leaky_relu": 0.05, "elu": 0.7}.get(act, 0.0)
    return make_layout(n_features, hidden, n_out, act, param, 3, out_code, dtype)


def _theta(spec, rng):
    theta = rng.normal(scale=0.5, size=spec.n_params).astype(spec.dtype)
    for r in spec.layers:
        if r[4] >= 0:  # prelu slopes
            theta[r[4]:r[4] + r[5]] = rng.uniform(0.1, 0.4, r[5])
    return theta


def _targets(rng, out_code, n, k, dtype):
    if out_code == 0:
        return np.zeros((0, k), dtype), rng.integers(0, k, n).astype(np.int64)
    if out_code == 1:
        Y = rng.integers(0, 2, (n, k))
    elif out_code == 3:
        Y = rng.poisson(1.5, (n, k))
    else:
        Y = rng.normal(size=(n, k))
    return Y.astype(dtype), np.zeros(0, np.int64)


@pytest.mark.parametrize("act,out_code,weighted", [
    ("maxout", 0, True), ("prelu", 1, False), ("elu", 3, True), ("tanh", 2, False)])
def test_loss_grad_matches_cpu(rng, act, out_code, weighted):
    spec = _spec(act, out_code)
    theta = _theta(spec, rng)
    n = 11
    X = rng.normal(size=(n, 5))
    Y, y = _targets(rng, out_code, n, 3, np.float64)
    sw = rng.uniform(0.2, 2.0, n) if weighted else np.zeros(0)
    loss_c, grad_c = cpu_backend.loss_grad(spec, theta, X, Y, y, sw, 0.01)
    loss_g, grad_g = cb.loss_grad(spec, theta, X, Y, y, sw, 0.01)
    np.testing.assert_allclose(loss_g, loss_c, rtol=1e-12)
    np.testing.assert_allclose(grad_g, grad_c, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("apply_out", [False, True])
def test_predict_in_chunks_matches_cpu(rng, monkeypatch, apply_out):
    monkeypatch.setattr(_config, "PREDICT_CHUNK_ROWS", 7)
    spec = _spec("relu", 0, dtype=np.float32)
    theta = _theta(spec, rng)
    X = rng.normal(size=(17, 5)).astype(np.float32)
    got = cb.predict(spec, theta, X, apply_out)
    want = cpu_backend.predict(spec, theta, X, apply_out)
    assert got.shape == (17, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_trainer_moves_data_once_and_keeps_optimizer_state(rng, monkeypatch):
    """Epochs send only the order; finish() writes theta and the Adam moments back to the host."""
    spec = _spec("relu", 0)
    n = 20
    X = rng.normal(size=(n, 5))
    Y, y = _targets(rng, 0, n, 3, np.float64)
    sw = rng.uniform(0.5, 1.5, n)

    def opt(theta):
        hyper = np.array([0.01, 0.9, 1.0, 0.9, 0.999, 1e-8, 0.0])
        return {"solver": 1, "state1": np.zeros_like(theta), "state2": np.zeros_like(theta),
                "hyper": hyper}

    theta0 = _theta(spec, rng)
    tc, tg = theta0.copy(), theta0.copy()
    oc, og = opt(tc), opt(tg)
    cpu_tr = cpu_backend.Trainer(spec, X, Y, y, sw, 8, tc, oc, 0.01)
    gpu_tr = cb.Trainer(spec, X, Y, y, sw, 8, tg, og, 0.01)
    orders = [rng.permutation(n) for _ in range(2)]
    assert np.isclose(gpu_tr.epoch(orders[0]), cpu_tr.epoch(orders[0]), rtol=1e-12)

    calls = []
    for fn in ("to_device", "device_array", "device_array_like"):
        real = getattr(cuda, fn)
        monkeypatch.setattr(cuda, fn, lambda *a, _r=real, _f=fn, **k: calls.append(_f) or _r(*a, **k))
    assert np.isclose(gpu_tr.epoch(orders[1]), cpu_tr.epoch(orders[1]), rtol=1e-12)
    assert calls == [], "an epoch allocated or sent data beyond the order"
    monkeypatch.undo()

    assert og["hyper"][6] == oc["hyper"][6] == 6.0  # 3 Adam steps per epoch
    np.testing.assert_allclose(gpu_tr.snapshot(), cpu_tr.snapshot(), rtol=1e-10)
    out = gpu_tr.finish()
    assert out is tg
    np.testing.assert_allclose(tg, cpu_tr.finish(), rtol=1e-10)
    np.testing.assert_allclose(og["state1"], oc["state1"], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(og["state2"], oc["state2"], rtol=1e-10, atol=1e-18)


def test_train_module_twins_match_cpu(rng):
    """train_epoch / loss_grad_batch / forward_batch with the CPU twins' arguments, on device arrays."""
    from fastmlp.backends.cpu import train as c_train

    spec = _spec("prelu", 1)
    n, cap = 13, 5
    X = rng.normal(size=(n, 5))
    Y, y = _targets(rng, 1, n, 3, np.float64)
    sw = rng.uniform(0.5, 1.5, n)
    order = rng.permutation(n).astype(np.int64)
    theta = _theta(spec, rng)
    hyper = np.array([0.05, 0.9, 1.0, 0.9, 0.999, 1e-8, 0.0])

    def host_bufs():
        return (np.empty(spec.ws_cols * cap), np.empty(max(spec.iws_cols, 1) * cap, np.int32),
                np.empty((cap, 5)), np.empty((cap, 3)), np.empty(0, np.int64), np.empty(cap))

    th_c, st_c, h_c = theta.copy(), np.zeros_like(theta), hyper.copy()
    ws, iws, Xb, Yb, yb, swb = host_bufs()
    tot_c = c_train.train_epoch(X, Y, np.zeros(0, np.int64), sw, order, th_c, np.zeros_like(theta),
                                spec.layers, spec.code, spec.param, spec.pieces, spec.out_code,
                                0.01, 0, st_c, st_c.copy(), h_c, ws, iws, cap, Xb, Yb, yb, swb)
    g_th, g_st, h_g = d(theta), d(np.zeros_like(theta)), hyper.copy()
    gbufs = [d(b) for b in host_bufs()]
    tot_g = g_train.train_epoch(d(X), d(Y), d(np.zeros(0, np.int64)), d(sw), order, g_th,
                                cuda.device_array_like(theta), spec.layers, spec.code, spec.param,
                                spec.pieces, spec.out_code, 0.01, 0, g_st, d(np.zeros_like(theta)),
                                h_g, *gbufs[:2], cap, *gbufs[2:])
    np.testing.assert_allclose(tot_g, tot_c, rtol=1e-12)
    np.testing.assert_allclose(g_th.copy_to_host(), th_c, rtol=1e-10)
    np.testing.assert_allclose(g_st.copy_to_host(), st_c, rtol=1e-10, atol=1e-15)

    grad_c = np.zeros_like(theta)
    ws, iws = np.empty(spec.ws_cols * n), np.empty(max(spec.iws_cols, 1) * n, np.int32)
    loss_c = c_train.loss_grad_batch(X, Y, np.zeros(0, np.int64), sw, theta, grad_c, spec.layers,
                                     spec.code, spec.param, spec.pieces, spec.out_code, 0.01,
                                     ws, iws, n)
    g_grad, g_ws = cuda.device_array_like(theta), d(ws)
    loss_g = g_train.loss_grad_batch(d(X), d(Y), d(np.zeros(0, np.int64)), d(sw), d(theta),
                                     g_grad, spec.layers, spec.code, spec.param, spec.pieces,
                                     spec.out_code, 0.01, g_ws, d(iws), n)
    np.testing.assert_allclose(loss_g, loss_c, rtol=1e-12)
    np.testing.assert_allclose(g_grad.copy_to_host(), grad_c, rtol=1e-10, atol=1e-14)
    O_c = c_train.forward_batch(X, theta, spec.layers, spec.code, spec.param, spec.pieces,
                                ws, iws, n)
    O_g = g_train.forward_batch(d(X), d(theta), spec.layers, spec.code, spec.param, spec.pieces,
                                g_ws, d(iws), n)
    np.testing.assert_allclose(O_g.copy_to_host(), O_c, rtol=1e-12, atol=1e-14)


def test_batch_whose_rows_all_weigh_zero_contributes_nothing(rng):
    spec = _spec("tanh", 0)
    n, cap = 10, 4
    X = rng.normal(size=(n, 5))
    Y, y = _targets(rng, 0, n, 3, np.float64)
    sw = rng.uniform(0.5, 1.5, n)
    sw[:cap] = 0.0
    theta = _theta(spec, rng)
    res = []
    for be in (cpu_backend, cb):
        th = theta.copy()
        o = {"solver": 1, "state1": np.zeros_like(th), "state2": np.zeros_like(th),
             "hyper": np.array([0.01, 0.9, 1.0, 0.9, 0.999, 1e-8, 0.0])}
        tr = be.Trainer(spec, X, Y, y, sw, cap, th, o, 0.01)
        res.append((tr.epoch(np.arange(n)), tr.finish()))
    assert np.isfinite(res[1][0])
    np.testing.assert_allclose(res[1][0], res[0][0], rtol=1e-12)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=1e-10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_epoch_reports_divergence_as_nan(rng):
    spec = _spec("relu", 2, n_out=1)
    theta = _theta(spec, rng)
    n = 8
    X = rng.normal(size=(n, 5)) * 1e200
    Y = rng.normal(size=(n, 1))
    o = {"solver": 0, "state1": np.zeros_like(theta), "state2": np.zeros_like(theta),
         "hyper": np.array([0.1, 0.9, 1.0, 0.9, 0.999, 1e-8, 0.0])}
    tr = cb.Trainer(spec, X, Y, np.zeros(0, np.int64), np.zeros(0), 4, theta, o, 0.0)
    assert np.isnan(tr.epoch(np.arange(n)))


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


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


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


# every activation; between them every task (multiclass, binary, regression,
# poisson) and both solvers
PARITY = [
    ("identity", "regression", "sgd"),
    ("logistic", "binary", "adam"),
    ("tanh", "multiclass", "sgd"),
    ("relu", "multiclass", "adam"),
    ("leaky_relu", "poisson", "adam"),
    ("prelu", "binary", "sgd"),
    ("elu", "multiclass", "adam"),
    ("maxout", "regression", "sgd"),
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


def test_same_random_state_same_initial_weights(rng, monkeypatch):
    seen = {}
    for mod in (cpu_backend, cb):
        real = mod.Trainer

        class Spy(real):
            def __init__(self, spec, X, Y, y, sw, batch_size, theta, opt, alpha, _n=mod.name):
                seen[_n] = theta.copy()
                super().__init__(spec, X, Y, y, sw, batch_size, theta, opt, alpha)

        monkeypatch.setattr(mod, "Trainer", Spy)
    X, y = _data(rng, "multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend in ("cpu", "cuda"):
            _estimator("multiclass", backend, max_iter=1, random_state=7).fit(X, y)
    np.testing.assert_array_equal(seen["cpu"], seen["cuda"])


def test_early_stopping_on_cuda(rng):
    _, _, a, b = _fit_both(rng, "multiclass", early_stopping=True, validation_fraction=0.25)
    _assert_same_model(a, b)
    assert len(b.validation_scores_) == 3
    np.testing.assert_allclose(b.validation_scores_, a.validation_scores_, rtol=1e-12)
    assert _rel(a.validation_loss_curve_, b.validation_loss_curve_) < 1e-6


def test_partial_fit_on_cuda_continues_like_cpu(rng):
    X, y = _data(rng, "multiclass")
    models = []
    for backend in ("cpu", "cuda"):
        m = _estimator("multiclass", backend)
        m.partial_fit(X[:20], y[:20], classes=[0, 1, 2])
        m.partial_fit(X[20:], y[20:])
        models.append(m)
    _assert_same_model(*models)
    assert models[1]._opt_state["hyper"][6] == models[0]._opt_state["hyper"][6] == 4


def test_sample_weight_and_class_weight_on_cuda(rng):
    X, y = _data(rng, "multiclass")
    sw = rng.uniform(0.2, 3.0, X.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pair = [_estimator("multiclass", be, max_iter=2, class_weight="balanced").fit(X, y, sw)
                for be in ("cpu", "cuda")]
        _assert_same_model(*pair)
        pair = [_estimator("multiclass", be, max_iter=2, class_weight={0: 3.0}).fit(X, y)
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


def test_auto_never_picks_the_simulator():
    if cb.is_simulated():
        assert get_backend("auto") is cpu_backend
        assert get_backend("cuda") is cb
    else:  # pragma: no cover - real GPU run
        assert get_backend("auto") is cb
