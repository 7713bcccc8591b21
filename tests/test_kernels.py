"""Every CPU kernel and every ``fastmlp.ops`` wrapper against the NumPy oracle in ``reference.py``.

Inputs are fresh random draws (the ``rng`` fixture), never zeros, in float32 and float64, on
non-square shapes.  The oracle computes in float64 from the very values the kernel saw (inputs are
cast to the kernel's dtype first), so the tolerance only has to cover the kernel's own rounding.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp import ops
from fastmlp._registry import (
    ACTIVATIONS, ADAM, LOGISTIC, OUT_EXP, OUT_IDENTITY, OUT_LOGISTIC, OUT_SOFTMAX, OUTPUTS, SGD,
)
from fastmlp.backends import cpu
from fastmlp.backends.cpu import activations as kact
from fastmlp.backends.cpu import dense as kdense
from fastmlp.backends.cpu import losses as kloss
from fastmlp.backends.cpu import train as ktrain
from fastmlp.backends.layout import ADAM_T, OptimizerState, make_layout

try:  # tests/ is a rootdir-relative path entry, not a package
    import reference as ref
except ImportError:  # pragma: no cover - if tests/ ever becomes a package
    from . import reference as ref

DTYPES = [np.float32, np.float64]
# elementwise kernels: a few ulps; reductions and GEMMs: a little more.
TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-13, atol=1e-14)}
TOL_SUM = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}

# (name, param): param is the leaky slope / elu alpha the kernels receive (0 when unused)
ELEMENTWISE = [
    ("identity", 0.0), ("logistic", 0.0), ("tanh", 0.0), ("relu", 0.0),
    ("leaky_relu", 0.07), ("prelu", 0.0), ("elu", 0.8), ("elu", 1.0),
]
EXTREME = np.array([-1e4, -1e3, -30.0, -1.0, 1.0, 30.0, 1e3, 1e4])


def _randn(rng, shape, dtype, scale=2.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _slopes(rng, m, dtype):
    return rng.uniform(0.05, 0.6, m).astype(dtype)


class strict:
    """Any warning (RuntimeWarning from overflow, invalid, ...) and any NumPy FP error raises."""

    def __enter__(self):
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("error")
        self._e = np.errstate(over="raise", invalid="raise", divide="raise")
        self._e.__enter__()

    def __exit__(self, *exc):
        self._e.__exit__(*exc)
        return self._w.__exit__(*exc)


def _finite(*arrays):
    for a in arrays:
        assert np.all(np.isfinite(a)), a


# =================================================================================================
# activations.py
# =================================================================================================


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,param", ELEMENTWISE)
def test_bias_act_forward(name, param, dtype, rng):
    n, m = 13, 7
    Z0 = _randn(rng, (n, m), dtype)
    b = _randn(rng, m, dtype, 0.5)
    s = _slopes(rng, m, dtype)
    Zb = Z0 + b  # the kernel's own first operation, same rounding
    Z, H = Z0.copy(), np.full((n, m), np.nan, dtype)
    kact.bias_act_forward(Z, b, ACTIVATIONS[name].code, param, s, H)
    assert_array_equal(Z, Zb)
    assert H.dtype == dtype
    assert_allclose(H, ref.activation(name, Zb, param, s), **TOL[dtype])
    if ACTIVATIONS[name].cache == "H":  # H may be Z itself for these
        Z = Z0.copy()
        kact.bias_act_forward(Z, b, ACTIVATIONS[name].code, param, s, Z)
        assert_array_equal(Z, H)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,param", ELEMENTWISE)
def test_act_backward(name, param, dtype, rng):
    n, m = 9, 14
    Z = _randn(rng, (n, m), dtype)
    s = _slopes(rng, m, dtype)
    H = ref.activation(name, Z, param, s).astype(dtype)
    dH = _randn(rng, (n, m), dtype, 1.0)
    code = ACTIVATIONS[name].code
    dZ = np.full_like(Z, np.nan)
    kact.act_backward(dH, Z, H, code, param, s, dZ)
    # the derivative is taken from the cache the kernel reads (H rounded to dtype for "H" codes)
    expect = ref.activation_backward(name, dH, Z, param, s)
    assert_allclose(dZ, expect, rtol=TOL[dtype]["rtol"] * 4, atol=TOL[dtype]["atol"] * 4)
    # in place: dZ may be dH
    d = dH.copy()
    kact.act_backward(d, Z, H, code, param, s, d)
    assert_array_equal(d, dZ)


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_slope_grad(dtype, rng):
    n, m = 17, 5
    Z = _randn(rng, (n, m), dtype)
    dH = _randn(rng, (n, m), dtype)
    out = np.full(m, np.nan, dtype)
    kact.prelu_slope_grad(dH, Z, out)
    assert_allclose(out, ref.prelu_slope_grad(dH, Z), **TOL_SUM[dtype])
    assert np.all(out != 0)  # every column has negative z on 17 random rows


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pieces", [2, 3])
def test_maxout_forward_backward(pieces, dtype, rng):
    n, units = 11, 4
    Z0 = _randn(rng, (n, units * pieces), dtype)
    b = _randn(rng, units * pieces, dtype, 0.5)
    Zb = Z0 + b
    Z = Z0.copy()
    H = np.full((n, units), np.nan, dtype)
    arg = np.full((n, units), -1, np.int32)
    kact.maxout_forward(Z, b, pieces, H, arg)
    H_ref, arg_ref = ref.maxout(Zb, pieces)
    assert_array_equal(Z, Zb)
    assert_array_equal(H, H_ref.astype(dtype))
    assert_array_equal(arg, arg_ref)
    assert set(np.unique(arg)) == set(range(pieces))  # every piece wins somewhere
    dH = _randn(rng, (n, units), dtype)
    dZ = np.full((n, units * pieces), np.nan, dtype)
    kact.maxout_backward(dH, arg, pieces, dZ)
    assert_array_equal(dZ, ref.maxout_backward(dH, arg_ref, pieces))


def test_maxout_ties_go_to_first_piece():
    Z = np.array([[1.0, 1.0, 2.0, 2.0, 2.0, -3.0]])
    H = np.empty((1, 2))
    arg = np.empty((1, 2), np.int32)
    kact.maxout_forward(Z, np.zeros(6), 3, H, arg)
    assert_array_equal(H, [[2.0, 2.0]])
    assert_array_equal(arg, [[2, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extremes(dtype):
    """The one stable sigmoid (scalar.sigmoid), as the compiled logistic activation runs it."""
    def sig(z):
        return kact.act(LOGISTIC, dtype(z), 0.0, 0.0)

    with strict():
        for z, expect in [(-1e3, 0.0), (-1e4, 0.0), (0.0, 0.5), (1e3, 1.0), (1e4, 1.0)]:
            v = sig(z)
            assert np.isfinite(v) and v == expect
        assert sig(-30.0) == pytest.approx(np.exp(-30.0), rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,param", ELEMENTWISE)
def test_activation_kernels_extreme_inputs(name, param, dtype, rng):
    Z = np.tile(EXTREME, (3, 1)).astype(dtype)
    m = Z.shape[1]
    s = _slopes(rng, m, dtype)
    code = ACTIVATIONS[name].code
    with strict():
        Zw, H = Z.copy(), np.empty_like(Z)
        kact.bias_act_forward(Zw, np.zeros(m, dtype), code, param, s, H)
        dZ = np.empty_like(Z)
        kact.act_backward(np.ones_like(Z), Z, H, code, param, s, dZ)
        H_ref = ref.activation(name, Z, param, s)
        dZ_ref = ref.activation_backward(name, np.ones_like(Z), Z, param, s)
    _finite(H, dZ)
    assert_allclose(H, H_ref, **TOL[dtype])
    assert_allclose(dZ, dZ_ref, rtol=1e-5, atol=1e-6)


def test_saturating_activations_at_extremes_exact_values():
    Z = np.array([[-1e3, 1e3]])
    s = np.zeros(2)
    out = {}
    with strict():
        for name, param in [("logistic", 0.0), ("tanh", 0.0), ("elu", 1.5)]:
            H = np.empty_like(Z)
            kact.bias_act_forward(Z.copy(), np.zeros(2), ACTIVATIONS[name].code, param, s, H)
            out[name] = H
    assert_array_equal(out["logistic"], [[0.0, 1.0]])
    assert_array_equal(out["tanh"], [[-1.0, 1.0]])
    assert_array_equal(out["elu"], [[-1.5, 1e3]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_propagates_nan(dtype):
    Z = np.array([[np.nan, -1.0, 2.0], [0.5, np.nan, -np.inf]], dtype)
    H = np.empty_like(Z)
    kact.bias_act_forward(Z.copy(), np.zeros(3, dtype), ACTIVATIONS["relu"].code, 0.0,
                          np.zeros(3, dtype), H)
    assert np.isnan(H[0, 0]) and np.isnan(H[1, 1])
    assert_array_equal(H[[0, 0, 1, 1], [1, 2, 0, 2]], [0.0, 2.0, 0.5, 0.0])
    assert np.isnan(ops.relu(Z)[0, 0])
    assert np.isnan(ops.relu(np.array([np.nan]))[0, 0])


N_PAR = 700  # not a multiple of the 256 rows per task: the last task is short


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,param", [("logistic", 0.0), ("relu", 0.0), ("prelu", 0.0),
                                        ("elu", 0.8)])
def test_act_parallel_matches_serial(name, param, dtype, rng):
    m = 5
    Z0 = _randn(rng, (N_PAR, m), dtype)
    b = _randn(rng, m, dtype, 0.5)
    s = _slopes(rng, m, dtype)
    code = ACTIVATIONS[name].code
    Zs, Hs = Z0.copy(), np.empty_like(Z0)
    Zp, Hp = Z0.copy(), np.full_like(Z0, np.nan)
    kact.bias_act_forward(Zs, b, code, param, s, Hs)
    kact.bias_act_forward_parallel(Zp, b, code, param, s, Hp)
    assert_array_equal(Zp, Zs)
    assert_allclose(Hp, Hs, **TOL[dtype])
    assert_allclose(Hp, ref.activation(name, Z0 + b, param, s), **TOL[dtype])
    if ACTIVATIONS[name].cache == "H":  # in place, as for serial: H is Z
        Zi = Z0.copy()
        kact.bias_act_forward_parallel(Zi, b, code, param, s, Zi)
        assert_allclose(Zi, Hs, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxout_parallel_matches_serial(dtype, rng):
    pieces, units = 3, 4
    Z0 = _randn(rng, (N_PAR, units * pieces), dtype)
    b = _randn(rng, units * pieces, dtype, 0.5)
    Hs, As = np.empty((N_PAR, units), dtype), np.empty((N_PAR, units), np.int32)
    Hp, Ap = np.full((N_PAR, units), np.nan, dtype), np.full((N_PAR, units), -1, np.int32)
    kact.maxout_forward(Z0.copy(), b, pieces, Hs, As)
    kact.maxout_forward_parallel(Z0.copy(), b, pieces, Hp, Ap)
    assert_array_equal(Hp, Hs)
    assert_array_equal(Ap, As)
    assert_array_equal(Ap, ref.maxout(Z0 + b, pieces)[1])


# =================================================================================================
# losses.py
# =================================================================================================


def _weights_or_empty(rng, n, dtype, weighted):
    return rng.uniform(0.2, 3.0, n).astype(dtype) if weighted else np.zeros(0, dtype)


def _targets(rng, out_code, n, k, dtype):
    """(Y, y) for an output code: labels for softmax, float targets for the others."""
    if out_code == OUT_SOFTMAX:
        y = rng.integers(0, k, n).astype(np.int64)
        y[:k] = np.arange(k)  # every class present
        return np.zeros((0, k), dtype), y
    if out_code == OUT_LOGISTIC:
        Y = rng.random((n, k))
    elif out_code == OUT_IDENTITY:
        Y = 3.0 * rng.standard_normal((n, k))
    else:
        Y = rng.poisson(2.0, (n, k)).astype(np.float64)
    return Y.astype(dtype), np.zeros(0, np.int64)


LOSS_KERNELS = {
    OUT_SOFTMAX: kloss.softmax_cross_entropy, OUT_LOGISTIC: kloss.sigmoid_binary_cross_entropy,
    OUT_IDENTITY: kloss.squared_error,
    # the exp output has no kernel of its own: the training loop's dispatcher
    OUT_EXP: lambda O, Y, sw, scale, P, dO: kloss.output_loss(OUT_EXP, O, Y, None, sw, scale,
                                                              P, dO),
}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_code", sorted(LOSS_KERNELS))
def test_loss_kernels(out_code, dtype, weighted, rng):
    n, k = 11, 4
    O = _randn(rng, (n, k), dtype, 1.5 if out_code != OUT_EXP else 0.7)
    Y, y = _targets(rng, out_code, n, k, dtype)
    sw = _weights_or_empty(rng, n, dtype, weighted)
    target = y if out_code == OUT_SOFTMAX else Y
    wsum = float(sw.astype(np.float64).sum()) if weighted else float(n)
    scale = 1.0 / wsum
    loss_ref, dO_ref, P_ref = ref.OUTPUT_LOSSES[out_code](O, target, sw if weighted else None)

    P, dO = np.full_like(O, np.nan), np.full_like(O, np.nan)
    O_before = O.copy()
    total = LOSS_KERNELS[out_code](O, target, sw, scale, P, dO)
    assert_array_equal(O, O_before)  # read only
    assert_allclose(total * scale, loss_ref, **TOL_SUM[dtype])
    assert_allclose(dO, dO_ref, **TOL_SUM[dtype])
    assert_allclose(P, P_ref, **TOL_SUM[dtype])

    # the dispatcher gives the same, and P may be dO (what the training loop does)
    both = np.full_like(O, np.nan)
    total2 = kloss.output_loss(out_code, O, Y, y, sw, scale, both, both)
    assert total2 == pytest.approx(total, rel=1e-6 if dtype == np.float32 else 1e-14)
    assert_allclose(both, dO, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_log_softmax_rows(dtype, rng):
    O = _randn(rng, (9, 6), dtype, 3.0)
    P, LP = np.full_like(O, np.nan), np.full_like(O, np.nan)
    kloss.softmax_rows(O, P)
    kloss.log_softmax_rows(O, LP)
    assert_allclose(P, ref.softmax(O), **TOL_SUM[dtype])
    assert_allclose(LP, ref.log_softmax(O), **TOL_SUM[dtype])
    assert_allclose(P.sum(axis=1), 1.0, **TOL_SUM[dtype])
    inplace = O.copy()
    kloss.softmax_rows(inplace, inplace)  # P may be O
    assert_allclose(inplace, P, **TOL[dtype])
    Pp = np.full((N_PAR, 6), np.nan, dtype)
    Obig = _randn(rng, (N_PAR, 6), dtype, 3.0)
    kloss.softmax_rows_parallel(Obig, Pp)
    Ps = np.empty_like(Obig)
    kloss.softmax_rows(Obig, Ps)
    assert_allclose(Pp, Ps, **TOL[dtype])
    assert_allclose(Pp, ref.softmax(Obig), **TOL_SUM[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_known_values(dtype):
    P = np.empty((1, 3), dtype)
    kloss.softmax_rows(np.array([[1.0, 2.0, 0.0]], dtype), P)
    assert_allclose(P, [[0.245, 0.665, 0.090]], atol=5e-4)
    assert_allclose(ops.softmax(np.array([[1.0, 2.0, 0.0]], dtype)),
                    [[0.24472847, 0.66524096, 0.09003057]], rtol=1e-6)


EXTREME_LOGITS = np.array([[1e4, -1e4, 0.0, 1.0],
                           [-1e4, -1e4, 1e4, -1.0],
                           [1e4, 1e4, -1e4, 3.0]])
EXTREME_LABELS = np.array([1, 2, 0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_family_extreme_logits(dtype):
    O = EXTREME_LOGITS.astype(dtype)
    n, k = O.shape
    with strict():
        P, LP = np.empty_like(O), np.empty_like(O)
        kloss.softmax_rows(O, P)
        kloss.log_softmax_rows(O, LP)
        Pc, dO = np.empty_like(O), np.empty_like(O)
        total = kloss.softmax_cross_entropy(O, EXTREME_LABELS, np.zeros(0, dtype), 1.0 / n, Pc, dO)
        opsP, opsLP = ops.softmax(O), ops.log_softmax(O)
        ops_loss, ops_dO, ops_P = ops.softmax_cross_entropy(O, EXTREME_LABELS)
        loss_ref, dO_ref, _ = ref.softmax_cross_entropy(O, EXTREME_LABELS)
    _finite(P, LP, Pc, dO, total, opsP, opsLP, ops_loss, ops_dO, ops_P)
    expect_P = [[1, 0, 0, 0], [0, 0, 1, 0], [0.5, 0.5, 0, 0]]
    expect_LP = [[0.0, -2e4, -1e4, 1.0 - 1e4],
                 [-2e4, -2e4, 0.0, -1.0 - 1e4],
                 [-np.log(2), -np.log(2), -2e4 - np.log(2), 3.0 - 1e4 - np.log(2)]]
    for got in (P, Pc, opsP, ops_P):
        assert_allclose(got, expect_P, atol=1e-7)
    for got in (LP, opsLP):
        assert_allclose(got, expect_LP, rtol=1e-6, atol=1e-6)
    # per-row losses 2e4, 0, log 2, reported as scikit-learn's log-loss does: P clipped to
    # [eps, 1 - eps] (eps of the dtype), so -log(eps), -log(1 - eps), log 2
    eps = np.finfo(dtype).eps
    clipped = (-np.log(eps) - np.log1p(-eps) + np.log(2)) / 3
    assert total / n == pytest.approx(clipped, rel=1e-6)
    assert ops_loss == pytest.approx(clipped, rel=1e-6)
    assert_allclose(dO, dO_ref, atol=1e-7)
    assert_allclose(ops_dO, dO_ref, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_bce_extreme_logits(dtype):
    O = np.array([[1e4, -1e4, 1e3], [-1e4, 1e4, -1e3]], dtype)
    Y = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype)
    with strict():
        P, dO = np.empty_like(O), np.empty_like(O)
        total = kloss.sigmoid_binary_cross_entropy(O, Y, np.zeros(0, dtype), 0.5, P, dO)
        ops_loss, ops_dO, ops_P = ops.sigmoid_binary_cross_entropy(O, Y)
        Pa = np.empty_like(O)
        kloss.output_activation(OUT_LOGISTIC, O, Pa)
        S = ops.sigmoid(O)
        loss_ref, dO_ref, P_ref = ref.sigmoid_binary_cross_entropy(O, Y)
    _finite(P, dO, total, ops_loss, ops_dO, ops_P, Pa, S)
    # rows: softplus(o) - y o  =  [1e4 + 0 + 0, 1e4 + 0 + 0], reported as scikit-learn's
    # log-loss: p clipped to [eps, 1 - eps], so -log(eps) - 2 log(1 - eps) per row
    eps = np.finfo(dtype).eps
    clipped = -np.log(eps) - 2 * np.log1p(-eps)
    assert total * 0.5 == pytest.approx(clipped, rel=1e-7)
    assert ops_loss == pytest.approx(clipped, rel=1e-7)
    expect_P = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    for got in (P, ops_P, Pa, S, P_ref):
        assert_array_equal(got, expect_P)
    assert_allclose(dO, dO_ref, atol=1e-7)
    assert_allclose(ops_dO, dO_ref, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_code", sorted(OUTPUTS.values()))
def test_output_activation(out_code, dtype, rng):
    O = _randn(rng, (8, 3), dtype)
    P = np.full_like(O, np.nan)
    kloss.output_activation(out_code, O, P)
    assert_allclose(P, ref.output_activation(out_code, O), **TOL_SUM[dtype])
    inplace = O.copy()
    kloss.output_activation(out_code, inplace, inplace)
    assert_allclose(inplace, P, **TOL[dtype])


def test_one_hot_kernel(rng):
    labels = rng.integers(0, 5, 12).astype(np.int64)
    out = np.full((12, 5), 7.0)
    kloss.one_hot(labels, out)
    assert_array_equal(out, ref.one_hot(labels, 5))
    assert_array_equal(ops.one_hot(labels, 5), ref.one_hot(labels, 5))
    assert_array_equal(ops.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    assert ops.one_hot([1], 2, dtype=np.float32).dtype == np.float32


# =================================================================================================
# dense.py
# =================================================================================================

DENSE_CASES = ELEMENTWISE + [("maxout", 0.0)]


def _pieces(name):
    return 3 if name == "maxout" else 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,param", DENSE_CASES)
def test_dense_forward_kernel(name, param, dtype, rng):
    n, fan_in, units = 10, 6, 4
    pieces = _pieces(name)
    zc = units * pieces
    X = _randn(rng, (n, fan_in), dtype, 1.0)
    W = _randn(rng, (fan_in, zc), dtype, 0.5)
    b = _randn(rng, zc, dtype, 0.5)
    s = _slopes(rng, zc, dtype)
    Z = np.full((n, zc), np.nan, dtype)
    H = np.full((n, units), np.nan, dtype)
    arg = np.full((n if name == "maxout" else 0, units), -1, np.int32)
    kdense.dense_forward(X, W, b, ACTIVATIONS[name].code, param, s, pieces, Z, H, arg)
    Z_ref, H_ref = ref.dense_forward(X, W, b, name, param, s, pieces)
    assert_allclose(Z, Z_ref, **TOL_SUM[dtype])
    assert_allclose(H, H_ref, **TOL_SUM[dtype])
    if name == "maxout":
        assert_array_equal(arg, ref.maxout(Z, pieces)[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_dense_backward_kernel(lam, dtype, rng):
    n, fan_in, fan_out = 10, 6, 3
    X = _randn(rng, (n, fan_in), dtype, 1.0)
    W = _randn(rng, (fan_in, fan_out), dtype, 0.5)
    dZ = _randn(rng, (n, fan_out), dtype, 0.1)
    dW, db = np.full_like(W, np.nan), np.full(fan_out, np.nan, dtype)
    dX = np.full_like(X, np.nan)
    sq = kdense.dense_backward(X, W, dZ, lam, dW, db, dX)
    dW_ref, db_ref, dX_ref = ref.dense_backward(X, W, dZ, lam)
    assert_allclose(dW, dW_ref, **TOL_SUM[dtype])
    assert_allclose(db, db_ref, **TOL_SUM[dtype])
    assert_allclose(dX, dX_ref, **TOL_SUM[dtype])
    # sum(W^2) comes back for the L2 term (only needed, and only computed, when lam != 0)
    if lam:
        assert_allclose(sq, float(np.sum(W.astype(np.float64) ** 2)), **TOL_SUM[dtype])
    # the first layer skips dX: a zero-row dHprev is left alone
    dW2 = np.empty_like(W)
    kdense.dense_backward(X, W, dZ, lam, dW2, db, np.empty((0, fan_in), dtype))
    assert_array_equal(dW2, dW)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,param", DENSE_CASES)
def test_hidden_backward_kernel(name, param, dtype, rng):
    n, units = 12, 5
    pieces = _pieces(name)
    zc = units * pieces
    code = ACTIVATIONS[name].code
    Z = _randn(rng, (n, zc), dtype)
    s = _slopes(rng, units, dtype)
    dH = _randn(rng, (n, units), dtype)
    dZ = np.full((n, zc), np.nan, dtype)
    dslopes = np.full(units if name == "prelu" else 0, np.nan, dtype)
    if name == "maxout":
        H, arg = ref.maxout(Z, pieces)
        H, arg = H.astype(dtype), arg.astype(np.int32)
    else:
        H = ref.activation(name, Z, param, s).astype(dtype)
        arg = np.zeros((0, units), np.int32)
    kdense.hidden_backward(dH, Z, H, arg, code, param, s, pieces, dZ, dslopes)
    assert_allclose(dZ, ref.activation_backward(name, dH, Z, param, s, pieces),
                    rtol=TOL[dtype]["rtol"] * 4, atol=TOL[dtype]["atol"] * 4)
    if name == "prelu":
        assert_allclose(dslopes, ref.prelu_slope_grad(dH, Z), **TOL_SUM[dtype])
        # in place (dZ is dH, as in the training loop): slopes read dH before it is overwritten
        d = dH.copy()
        ds2 = np.full(units, np.nan, dtype)
        kdense.hidden_backward(d, Z, H, arg, code, param, s, pieces, d, ds2)
        assert_array_equal(ds2, dslopes)
        assert_array_equal(d, dZ)


# =================================================================================================
# train.py: forward / predict and the compiled epoch (the gradient itself: test_gradients.py)
# =================================================================================================


def _net(rng, activation, out_code, dtype, n_features=4, hidden=(5, 3), n_outputs=3, param=0.0,
         pieces=2):
    spec = make_layout(n_features, hidden, n_outputs, activation, param, pieces, out_code, dtype)
    theta = (0.5 * rng.standard_normal(spec.n_params)).astype(dtype)
    for s in ref.unpack(spec, theta)[2]:  # prelu slopes in a sensible range
        s[:] = rng.uniform(0.05, 0.5, s.shape)
    return spec, theta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation,out_code", [
    ("relu", OUTPUTS["softmax"]), ("tanh", OUTPUTS["logistic"]), ("prelu", OUTPUTS["identity"]),
    ("maxout", OUTPUTS["exp"]), ("elu", OUTPUTS["softmax"]),
])
def test_predict_matches_reference(activation, out_code, dtype, rng):
    spec, theta = _net(rng, activation, out_code, dtype, param=0.9 if activation == "elu" else 0.0)
    X = _randn(rng, (37, 4), dtype, 1.0)
    for apply_out in (False, True):
        got = cpu.predict(spec, theta, X, apply_out)
        assert got.dtype == dtype and got.shape == (37, 3)
        assert_allclose(got, ref.network_predict(spec, theta, X, apply_out), **TOL_SUM[dtype])


def test_predict_in_chunks(rng):
    from fastmlp._config import PREDICT_CHUNK_ROWS

    spec, theta = _net(rng, "relu", OUTPUTS["softmax"], np.float64, n_features=3, hidden=(4,))
    X = rng.standard_normal((PREDICT_CHUNK_ROWS + 37, 3))
    assert_allclose(cpu.predict(spec, theta, X, True), ref.network_predict(spec, theta, X),
                    rtol=1e-12, atol=1e-14)


def _opt(theta, solver, lr, momentum=0.9, nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8):
    return OptimizerState.new(solver, theta, learning_rate=lr, momentum=momentum,
                              nesterov=nesterov, beta_1=beta1, beta_2=beta2, epsilon=eps)


@pytest.mark.parametrize("nesterov", [False, True])
def test_train_epoch_sgd_batches(nesterov, rng):
    """Two SGD epochs over shuffled batches of 4 (and a short one) == loss_grad + reference step."""
    spec, theta = _net(rng, "tanh", OUTPUTS["softmax"], np.float64)
    n = 10
    X = rng.standard_normal((n, 4))
    y = rng.integers(0, 3, n).astype(np.int64)
    sw = rng.uniform(0.5, 2.0, n)
    Y = np.zeros((0, 1))
    alpha, lr, mom = 0.01, 0.1, 0.9
    opt = _opt(theta, SGD, lr, mom, nesterov)
    trainer = cpu.Trainer(spec, X, Y, y, sw, 4, theta.copy(), opt, alpha)
    th, vel = theta.copy(), np.zeros_like(theta)
    for _ in range(2):
        order = rng.permutation(n).astype(np.int64)
        total = trainer.epoch(order)
        expect_total = 0.0
        for start in range(0, n, 4):
            idx = order[start:start + 4]
            loss, g = cpu.loss_grad(spec, th, X[idx], Y, y[idx], sw[idx], alpha)
            expect_total += loss * len(idx)
            th, vel = ref.sgd_step(th, g, vel, lr, mom, nesterov)
        assert total == pytest.approx(expect_total, rel=1e-12)
        assert_allclose(trainer.theta, th, rtol=1e-12, atol=1e-14)
        assert_allclose(opt.state1, vel, rtol=1e-12, atol=1e-14)


def test_train_epoch_adam_counts_steps(rng):
    spec, theta = _net(rng, "prelu", OUTPUTS["identity"], np.float64, n_outputs=2)
    n = 9
    X = rng.standard_normal((n, 4))
    Y = rng.standard_normal((n, 2))
    y, sw = np.zeros(0, np.int64), np.zeros(0)
    opt = _opt(theta, ADAM, 0.01, beta1=0.8, beta2=0.99, eps=1e-7)
    trainer = cpu.Trainer(spec, X, Y, y, sw, 5, theta.copy(), opt, 0.05)
    order = np.arange(n, dtype=np.int64)[::-1].copy()
    trainer.epoch(order)
    th, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    for t, idx in enumerate([order[:5], order[5:]], start=1):
        _, g = cpu.loss_grad(spec, th, X[idx], Y[idx], y, sw, 0.05)
        th, m, v = ref.adam_step(th, g, m, v, 0.01, 0.8, 0.99, 1e-7, t)
    assert opt.hyper[ADAM_T] == 2.0 and opt.steps == 2
    assert_allclose(trainer.theta, th, rtol=1e-12, atol=1e-14)
    assert_allclose(opt.state1, m, rtol=1e-12, atol=1e-16)
    assert_allclose(opt.state2, v, rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("activation,out_name,solver,weights", [
    ("relu", "softmax", ADAM, False), ("prelu", "identity", SGD, True),
    ("maxout", "logistic", ADAM, True), ("elu", "exp", SGD, False),
])
def test_train_epoch_split_rows_equals_one_thread(activation, out_name, solver, weights, rng,
                                                  config):
    """Batches halved between two threads (summed gradients) == the one-thread epoch."""
    out_code = OUTPUTS[out_name]
    spec, theta = _net(rng, activation, out_code, np.float64, hidden=(6, 5), n_outputs=2)
    n, batch = 23, 10  # batches of 10, 10 and 3 rows: halves of 5, 5 and 2 / 1
    X = rng.standard_normal((n, 4))
    if out_name == "softmax":
        Y, y = np.zeros((0, 2)), rng.integers(0, 2, n).astype(np.int64)
    else:
        Y = rng.uniform(0.1, 1.0, (n, 2)) if out_name in ("logistic", "exp") else \
            rng.standard_normal((n, 2))
        y = np.zeros(0, np.int64)
    sw = rng.uniform(0.5, 2.0, n) if weights else np.zeros(0)
    results = {}
    for split_rows in (0, 1):
        config(CPU_SPLIT_MIN_ROWS=split_rows)
        opt = _opt(theta, solver, 0.05)
        trainer = cpu.Trainer(spec, X, Y, y, sw, batch, theta.copy(), opt, 0.01)
        assert trainer.split == (split_rows > 0 and cpu._can_split())
        order = np.random.default_rng(5).permutation(n).astype(np.int64)
        totals = [trainer.epoch(order) for _ in range(2)]
        results[split_rows] = (totals, trainer.theta.copy(), opt.state1.copy())
    (t0, th0, s0), (t1, th1, s1) = results[0], results[1]
    assert_allclose(t1, t0, rtol=1e-12)
    assert_allclose(th1, th0, rtol=1e-11, atol=1e-13)
    assert_allclose(s1, s0, rtol=1e-11, atol=1e-13)
    assert not np.allclose(th0, theta)  # the epochs did train


def test_nan_input_propagates_through_relu_network(rng):
    """A NaN must reach the loss (train_epoch then returns NaN) and the predictions."""
    spec, theta = _net(rng, "relu", OUTPUTS["softmax"], np.float64)
    X = rng.standard_normal((6, 4))
    X[2, 1] = np.nan
    y = rng.integers(0, 3, 6).astype(np.int64)
    assert np.isnan(cpu.predict(spec, theta, X, False)[2]).all()
    loss, _ = cpu.loss_grad(spec, theta, X, np.zeros((0, 1)), y, np.zeros(0), 0.0)
    assert np.isnan(loss)
    trainer = cpu.Trainer(spec, X, np.zeros((0, 1)), y, np.zeros(0), 6, theta.copy(),
                          _opt(theta, SGD, 0.1), 0.0)
    assert np.isnan(trainer.epoch(np.arange(6, dtype=np.int64)))


# =================================================================================================
# fastmlp.ops: the public wrappers
# =================================================================================================

OPS_CASES = [  # (name, kwargs for ops.activation, param for the reference)
    ("identity", {}, None), ("logistic", {}, None), ("sigmoid", {}, None), ("tanh", {}, None),
    ("relu", {}, None), ("leaky_relu", {"negative_slope": 0.2}, 0.2),
    ("leaky_relu", {}, 0.01), ("elu", {"elu_alpha": 0.6}, 0.6), ("elu", {}, 1.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kw,param", OPS_CASES)
def test_ops_activation_and_grad(name, kw, param, dtype, rng):
    Z = _randn(rng, (7, 5), dtype)
    dH = _randn(rng, (7, 5), dtype)
    H = ops.activation(name, Z, **kw)
    assert H.dtype == dtype and H.shape == Z.shape
    assert_allclose(H, ref.activation(name, Z, param), **TOL[dtype])
    dZ = ops.activation_grad(name, dH, Z, **kw)
    assert dZ.dtype == dtype
    assert_allclose(dZ, ref.activation_backward(name, dH, Z, param),
                    rtol=TOL[dtype]["rtol"] * 4, atol=TOL[dtype]["atol"] * 4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_prelu(dtype, rng):
    Z = _randn(rng, (8, 3), dtype)
    dH = _randn(rng, (8, 3), dtype)
    a = _slopes(rng, 3, dtype)
    assert_allclose(ops.prelu(Z, a), ref.prelu(Z, a), **TOL[dtype])
    assert_allclose(ops.activation("prelu", Z), ref.prelu(Z, np.full(3, 0.25)), **TOL[dtype])
    dZ, ds = ops.activation_grad("prelu", dH, Z, slopes=a)
    assert_allclose(dZ, ref.activation_backward("prelu", dH, Z, slopes=a), **TOL[dtype])
    assert_allclose(ds, ref.prelu_slope_grad(dH, Z), **TOL_SUM[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pieces", [2, 3])
def test_ops_maxout(pieces, dtype, rng):
    Z = _randn(rng, (6, 4 * pieces), dtype)
    dH = _randn(rng, (6, 4), dtype)
    H, arg = ops.maxout(Z, pieces)
    H_ref, arg_ref = ref.maxout(Z, pieces)
    assert_array_equal(H, H_ref.astype(dtype))
    assert_array_equal(arg, arg_ref)
    expect = ref.maxout_backward(dH, arg_ref, pieces)
    assert_array_equal(ops.activation_grad("maxout", dH, Z, pieces=pieces), expect)
    assert_array_equal(ops.activation_grad("maxout", dH, Z, pieces=pieces, argmax=arg), expect)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_named_wrappers(dtype, rng):
    Z = _randn(rng, (4, 6), dtype)
    Z0 = Z.copy()
    a = _slopes(rng, 6, dtype)
    t = TOL[dtype]
    assert_allclose(ops.identity(Z), Z, **t)
    assert_allclose(ops.sigmoid(Z), ref.logistic(Z), **t)
    assert_allclose(ops.logistic(Z), ref.logistic(Z), **t)
    assert_allclose(ops.tanh(Z), ref.tanh(Z), **t)
    assert_allclose(ops.relu(Z), ref.relu(Z), **t)
    assert_allclose(ops.leaky_relu(Z, 0.3), ref.leaky_relu(Z, 0.3), **t)
    assert_allclose(ops.prelu(Z, a), ref.prelu(Z, a), **t)
    assert_allclose(ops.elu(Z, 0.5), ref.elu(Z, 0.5), **t)
    assert_allclose(ops.maxout(Z, 3)[0], ref.maxout(Z, 3)[0], **t)
    assert_allclose(ops.softmax(Z), ref.softmax(Z), **TOL_SUM[dtype])
    assert_allclose(ops.log_softmax(Z), ref.log_softmax(Z), **TOL_SUM[dtype])
    for f in (ops.identity, ops.sigmoid, ops.tanh, ops.relu, ops.softmax, ops.log_softmax):
        assert f(Z).dtype == dtype
    assert_array_equal(Z, Z0)  # inputs are never written


def test_ops_integer_and_1d_input():
    assert ops.relu(np.array([[-1, 2]])).dtype == np.float64
    assert_array_equal(ops.relu(np.array([[-1, 2]])), [[0.0, 2.0]])
    assert_array_equal(ops.relu([-2.0, 3.0]), [[0.0, 3.0]])  # 1-D is one row
    assert_allclose(ops.softmax([1.0, 2.0, 0.0]), [[0.24472847, 0.66524096, 0.09003057]])


def test_ops_activation_extremes():
    Z = np.tile(EXTREME, (2, 1))
    with strict():
        out = {name: ops.activation(name, Z) for name in ("logistic", "tanh", "elu", "relu")}
        grads = {name: ops.activation_grad(name, np.ones_like(Z), Z)
                 for name in ("logistic", "tanh", "elu")}
    for name, H in out.items():
        _finite(H)
        assert_allclose(H, ref.activation(name, Z), rtol=1e-14, atol=1e-300)
    for name, g in grads.items():
        _finite(g)
        assert_allclose(g, ref.activation_backward(name, np.ones_like(Z), Z), rtol=1e-12,
                        atol=1e-14)
    assert_array_equal(ops.sigmoid(np.array([[-1e3, 1e3]])), [[0.0, 1.0]])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_losses(dtype, weighted, rng):
    n, k = 13, 4
    Z = _randn(rng, (n, k), dtype)
    sw = rng.uniform(0.2, 3.0, n).astype(dtype) if weighted else None

    y = rng.integers(0, k, n)
    loss, dZ, P = ops.softmax_cross_entropy(Z, y, sample_weight=sw)
    l_ref, d_ref, p_ref = ref.softmax_cross_entropy(Z, y, sw)
    assert_allclose(loss, l_ref, **TOL_SUM[dtype])
    assert_allclose(dZ, d_ref, **TOL_SUM[dtype])
    assert_allclose(P, p_ref, **TOL_SUM[dtype])
    assert dZ.dtype == dtype and P.dtype == dtype

    Y = rng.integers(0, 2, (n, k)).astype(dtype)
    loss, dZ, P = ops.sigmoid_binary_cross_entropy(Z, Y, sample_weight=sw)
    l_ref, d_ref, p_ref = ref.sigmoid_binary_cross_entropy(Z, Y, sw)
    assert_allclose(loss, l_ref, **TOL_SUM[dtype])
    assert_allclose(dZ, d_ref, **TOL_SUM[dtype])
    assert_allclose(P, p_ref, **TOL_SUM[dtype])

    Y = _randn(rng, (n, k), dtype)
    loss, dO = ops.squared_error(Z, Y, sample_weight=sw)
    l_ref, d_ref, _ = ref.squared_error(Z, Y, sw)
    assert_allclose(loss, l_ref, **TOL_SUM[dtype])
    assert_allclose(dO, d_ref, **TOL_SUM[dtype])


def test_ops_softmax_cross_entropy_accepts_integral_float_labels(rng):
    Z = rng.standard_normal((5, 3))
    y = np.array([0, 2, 1, 1, 0])
    a = ops.softmax_cross_entropy(Z, y)
    b = ops.softmax_cross_entropy(Z, y.astype(np.float64))
    assert a[0] == b[0]
    assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kw,param", [("relu", {}, None), ("tanh", {}, None),
                                           ("elu", {"elu_alpha": 0.7}, 0.7),
                                           ("maxout", {"pieces": 3}, None),
                                           ("prelu", {"slopes": None}, None)])
@pytest.mark.parametrize("alpha", [0.0, 0.25])
def test_ops_dense_forward_backward(name, kw, param, alpha, dtype, rng):
    n, fan_in, units = 9, 5, 4
    pieces = kw.get("pieces", 1)
    kw = dict(kw)
    if name == "prelu":
        kw["slopes"] = _slopes(rng, units, dtype)
    X = _randn(rng, (n, fan_in), dtype, 1.0)
    W = _randn(rng, (fan_in, units * pieces), dtype, 0.5)
    b = _randn(rng, units * pieces, dtype, 0.5)
    H, cache = ops.dense_forward(X, W, b, name, **kw)
    Z_ref, H_ref = ref.dense_forward(X, W, b, name, param, kw.get("slopes"), max(pieces, 2))
    assert H.dtype == dtype
    assert_allclose(H, H_ref, **TOL_SUM[dtype])
    dH = _randn(rng, H.shape, dtype)
    dW, db, dX = ops.dense_backward(dH, cache, alpha=alpha)
    dZ_ref = ref.activation_backward(name, dH, Z_ref, param, kw.get("slopes"), max(pieces, 2))
    dW_ref, db_ref, dX_ref = ref.dense_backward(X, W, dZ_ref, alpha)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else TOL_SUM[dtype]
    assert_allclose(dW, dW_ref, **tol)
    assert_allclose(db, db_ref, **tol)
    assert_allclose(dX, dX_ref, **tol)
    if name == "prelu":
        assert_allclose(cache["dslopes"], ref.prelu_slope_grad(dH, Z_ref), **tol)
    assert ops.dense_backward(dH, cache, need_dX=False)[2] is None


# --- ops: bad input gives a clear ValueError / TypeError -----------------------------------------


def test_ops_rejects_bad_labels(rng):
    Z = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ops.softmax_cross_entropy(Z, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ops.softmax_cross_entropy(Z, [0, -1, 2, 1])
    with pytest.raises(ValueError, match="length 4"):
        ops.softmax_cross_entropy(Z, [0, 1, 2])
    with pytest.raises(ValueError, match="length 4"):
        ops.softmax_cross_entropy(Z, [[0, 1], [2, 0]])
    with pytest.raises(TypeError, match="integers"):
        ops.softmax_cross_entropy(Z, [0.5, 1, 2, 0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ops.one_hot([0, 3], 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ops.one_hot([-1], 3)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="n_classes"):
            ops.one_hot([0], bad)


def test_ops_rejects_bad_shapes(rng):
    Z = rng.standard_normal((4, 6))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        ops.softmax(np.ones((2, 2, 2)))
    with pytest.raises(TypeError, match="numeric"):
        ops.relu(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="Unknown activation"):
        ops.activation("swish", Z)
    with pytest.raises(TypeError, match="string"):
        ops.activation(3, Z)
    with pytest.raises(ValueError, match="pieces"):
        ops.maxout(Z, 4)
    with pytest.raises(ValueError, match="pieces"):
        ops.maxout(Z, 1)
    with pytest.raises(ValueError, match="shape"):
        ops.activation_grad("relu", np.ones((4, 5)), Z)
    with pytest.raises(ValueError, match="shape"):
        ops.activation_grad("maxout", np.ones((4, 6)), Z, pieces=2)
    with pytest.raises(ValueError):
        ops.prelu(Z, np.ones(5))
    with pytest.raises(ValueError, match="shape"):
        ops.sigmoid_binary_cross_entropy(Z, np.ones((4, 5)))
    with pytest.raises(ValueError, match="shape"):
        ops.squared_error(Z, np.ones((3, 6)))
    with pytest.raises(ValueError, match="sample_weight"):
        ops.squared_error(Z, Z, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight"):
        ops.softmax_cross_entropy(Z, [0, 1, 2, 3], sample_weight=np.ones((4, 1)))
    with pytest.raises(ValueError, match="chain"):
        ops.dense_forward(Z, np.ones((5, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="chain"):
        ops.dense_forward(Z, np.ones((6, 3)), np.zeros(4))


def test_ops_softmax_of_zero_columns_is_a_clear_error():
    """softmax over no classes is undefined: a ValueError, not a SystemError out of numba."""
    for f in (ops.softmax, ops.log_softmax):
        with pytest.raises(ValueError, match="column"):
            f(np.ones((3, 0)))
