"""Finite-difference check of the whole network's gradient, ``fastmlp.backends.cpu.loss_grad``.

For every hidden activation and every output/loss pair, on a two-hidden-layer network in float64,
the analytic gradient (weights, biases and prelu slopes, L2 penalty, sample weights included) is
compared with central differences of the loss (the reference objective in its stable, unclipped
form: the kernels report scikit-learn's clipped log-loss but return the exact gradient), and the
reported loss itself with ``reference.network_loss``.
Kinks (relu-like units at z = 0, elu with alpha != 1 at z = 0, maxout ties) would make the finite
difference meaningless there, so parameters are redrawn until every hidden pre-activation is well
away from one; a perturbation of EPS moves a pre-activation by far less than that margin.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastmlp._registry import OUTPUTS
from fastmlp.backends import cpu
from fastmlp.backends.layout import make_layout, unpack

try:  # tests/ is a rootdir-relative path entry, not a package
    import reference as ref
except ImportError:  # pragma: no cover
    from . import reference as ref

EPS = 1e-6  # central-difference step
MARGIN = 1e-3  # minimum distance of every hidden pre-activation from a kink
N, D, HIDDEN = 8, 4, (5, 3)

# (activation, param (leaky slope / elu alpha), maxout pieces)
ACTIVATIONS = [
    ("identity", 0.0, 2), ("logistic", 0.0, 2), ("tanh", 0.0, 2), ("relu", 0.0, 2),
    ("leaky_relu", 0.05, 2), ("prelu", 0.0, 2), ("elu", 1.0, 2), ("elu", 0.6, 2),
    ("maxout", 0.0, 2), ("maxout", 0.0, 3),
]
# (output, n_outputs): classifier outputs (multiclass softmax, multilabel logistic) and
# regressor outputs (multi-output identity, exp / poisson)
OUTS = [("softmax", 3), ("logistic", 2), ("identity", 2), ("exp", 2)]


def _data(rng, out_code, k, weighted):
    X = rng.standard_normal((N, D))
    if out_code == OUTPUTS["softmax"]:
        y = rng.integers(0, k, N).astype(np.int64)
        y[:k] = np.arange(k)
        Y = np.zeros((0, 1))
    else:
        y = np.zeros(0, np.int64)
        if out_code == OUTPUTS["logistic"]:
            Y = rng.integers(0, 2, (N, k)).astype(np.float64)
        elif out_code == OUTPUTS["identity"]:
            Y = rng.standard_normal((N, k))
        else:
            Y = rng.poisson(1.5, (N, k)).astype(np.float64)
    sw = rng.uniform(0.2, 2.5, N) if weighted else np.zeros(0)
    return X, Y, y, sw


def _kink_distance(spec, theta, X):
    """Smallest distance of a hidden pre-activation from the activation's kink (inf if smooth)."""
    name, param = spec.activation, spec.param
    if name in ("identity", "logistic", "tanh") or (name == "elu" and param == 1.0):
        return np.inf
    _, Zs = ref.network_forward(spec, theta, X)
    dist = np.inf
    for Z in Zs:
        if name == "maxout":
            G = np.sort(Z.reshape(Z.shape[0], -1, spec.pieces), axis=2)
            dist = min(dist, float(np.min(G[:, :, -1] - G[:, :, -2])))
        else:
            dist = min(dist, float(np.min(np.abs(Z))))
    return dist


def _theta(rng, spec, X):
    """Random parameters (prelu slopes in (0.05, 0.5)) with every unit away from its kink."""
    for _ in range(100):
        theta = 0.7 * rng.standard_normal(spec.n_params)
        for s in unpack(spec, theta)[2]:
            s[:] = rng.uniform(0.05, 0.5, s.shape)
        if _kink_distance(spec, theta, X) > MARGIN:
            return theta
    raise AssertionError("could not draw parameters away from the kinks")


def _finite_difference(f, theta):
    g = np.empty_like(theta)
    for i in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += EPS
        tm[i] -= EPS
        g[i] = (f(tp) - f(tm)) / (2 * EPS)
    return g


def _check(spec, theta, X, Y, y, sw, alpha):
    loss, grad = cpu.loss_grad(spec, theta, X, Y, y, sw, alpha)
    assert np.isfinite(loss) and grad.shape == theta.shape
    # the loss is reported as scikit-learn's (the log-losses clipped at eps, log(1 - p)
    # for the logistic output) ...
    assert_allclose(loss, ref.network_loss(spec, theta, X, Y, y, sw, alpha), rtol=1e-12)
    # ... and the gradient is the exact objective's, as scikit-learn's is.  Central
    # differences of the reported form would measure its rounding (log(1 - p) loses
    # all digits as p nears 1), so they are taken of the stable, unclipped form
    fd = _finite_difference(
        lambda t: ref.network_loss(spec, t, X, Y, y, sw, alpha, clip=False), theta)
    rel = np.linalg.norm(grad - fd) / (np.linalg.norm(grad) + np.linalg.norm(fd))
    assert rel < 1e-7, rel
    assert_allclose(grad, fd, rtol=1e-5, atol=1e-7 * max(1.0, abs(loss)))
    return grad


@pytest.mark.parametrize("alpha,weighted", [(0.0, False), (0.37, True)],
                         ids=["plain", "alpha+weights"])
@pytest.mark.parametrize("out,k", OUTS, ids=[o for o, _ in OUTS])
@pytest.mark.parametrize("activation,param,pieces", ACTIVATIONS,
                         ids=[f"{a}{'-' + str(p) if a == 'elu' else ''}"
                              f"{'-' + str(k) if a == 'maxout' else ''}"
                              for a, p, k in ACTIVATIONS])
def test_network_gradient(activation, param, pieces, out, k, alpha, weighted, rng):
    out_code = OUTPUTS[out]
    spec = make_layout(D, HIDDEN, k, activation, param, pieces, out_code, np.float64)
    X, Y, y, sw = _data(rng, out_code, k, weighted)
    theta = _theta(rng, spec, X)
    grad = _check(spec, theta, X, Y, y, sw, alpha)
    if activation == "prelu":
        # the slope gradients are really there (and were just checked with the rest)
        dslopes = np.concatenate(unpack(spec, grad)[2])
        assert dslopes.size == sum(HIDDEN) and np.count_nonzero(dslopes) >= 2


def test_one_hidden_layer_and_single_output(rng):
    """The 2-layer net (one hidden layer) with one logistic output, as binary classifiers use."""
    spec = make_layout(3, (6,), 1, "relu", 0.0, 2, OUTPUTS["logistic"], np.float64)
    X = rng.standard_normal((N, 3))
    Y = rng.integers(0, 2, (N, 1)).astype(np.float64)
    theta = _theta(rng, spec, X)
    _check(spec, theta, X, Y, np.zeros(0, np.int64), rng.uniform(0.5, 2.0, N), 0.2)


def test_integer_weights_equal_repeated_rows(rng):
    """sw = 2 for a row is the same objective as that row appearing twice."""
    spec = make_layout(D, HIDDEN, 3, "tanh", 0.0, 2, OUTPUTS["softmax"], np.float64)
    X, _, y, _ = _data(rng, OUTPUTS["softmax"], 3, False)
    theta = _theta(rng, spec, X)
    sw = rng.integers(1, 4, N).astype(np.float64)
    rep = np.repeat(np.arange(N), sw.astype(int))
    Y0 = np.zeros((0, 1))
    l1, g1 = cpu.loss_grad(spec, theta, X, Y0, y, sw, 0.3)
    l2, g2 = cpu.loss_grad(spec, theta, X[rep], Y0, y[rep], np.zeros(0), 0.3)
    assert_allclose(l1, l2, rtol=1e-12)
    assert_allclose(g1, g2, rtol=1e-10, atol=1e-14)


def test_l2_penalty_spares_biases_and_slopes(rng):
    """The alpha term adds alpha / sum(w) * W to weight gradients only."""
    spec = make_layout(D, HIDDEN, 2, "prelu", 0.0, 2, OUTPUTS["identity"], np.float64)
    X, Y, y, sw = _data(rng, OUTPUTS["identity"], 2, True)
    theta = _theta(rng, spec, X)
    alpha = 0.8
    l0, g0 = cpu.loss_grad(spec, theta, X, Y, y, sw, 0.0)
    l1, g1 = cpu.loss_grad(spec, theta, X, Y, y, sw, alpha)
    coefs, intercepts, slopes = unpack(spec, theta)
    sq = sum(np.sum(W ** 2) for W in coefs)
    assert_allclose(l1 - l0, alpha / (2 * sw.sum()) * sq, rtol=1e-10)
    dc, di, ds = unpack(spec, g1 - g0)
    for W, dW in zip(coefs, dc):
        assert_allclose(dW, alpha / sw.sum() * W, rtol=1e-10, atol=1e-15)
    for d in di + ds:
        assert_allclose(d, 0.0, atol=1e-15)


@pytest.mark.parametrize("activation", ["relu", "prelu", "maxout", "logistic"])
def test_float32_gradient_matches_float64(activation, rng):
    """The float32 kernels compute the same gradient to float32 accuracy."""
    spec64 = make_layout(D, HIDDEN, 3, activation, 0.0, 2, OUTPUTS["softmax"], np.float64)
    spec32 = make_layout(D, HIDDEN, 3, activation, 0.0, 2, OUTPUTS["softmax"], np.float32)
    X, _, y, _ = _data(rng, OUTPUTS["softmax"], 3, False)
    theta = _theta(rng, spec64, X)
    sw = rng.uniform(0.5, 2.0, N)
    l64, g64 = cpu.loss_grad(spec64, theta, X, np.zeros((0, 1)), y, sw, 0.1)
    X32, th32 = X.astype(np.float32), theta.astype(np.float32)
    # reference on exactly the float32 values, so only the kernel's rounding remains
    l_ref = ref.network_loss(spec64, th32.astype(np.float64), X32, None, y, sw, 0.1)
    l32, g32 = cpu.loss_grad(spec32, th32, X32, np.zeros((0, 1), np.float32), y,
                             sw.astype(np.float32), 0.1)
    assert g32.dtype == np.float32
    assert_allclose(l32, l_ref, rtol=1e-5)
    _, g_ref = cpu.loss_grad(spec64, th32.astype(np.float64), X32.astype(np.float64),
                             np.zeros((0, 1)), y, sw.astype(np.float32).astype(np.float64), 0.1)
    assert_allclose(g32, g_ref, rtol=1e-4, atol=1e-5 * np.abs(g_ref).max())
    assert np.isfinite(l64)
