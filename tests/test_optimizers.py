"""The fused optimizer steps of ``fastmlp.backends.cpu.optimizers``.

Checked three ways: against numbers worked out by hand for a 3-vector over two steps, against the
reference (``reference.sgd_step`` / ``adam_step``) on random vectors, and the reference itself
against scikit-learn's ``SGDOptimizer`` / ``AdamOptimizer``, whose rules fastmlp promises to follow.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

from fastmlp.backends.cpu.optimizers import adam_step, sgd_step

try:  # tests/ is a rootdir-relative path entry, not a package
    import reference as ref
except ImportError:  # pragma: no cover
    from . import reference as ref

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}

THETA0 = [1.0, -2.0, 0.5]
G1 = [0.5, -1.0, 2.0]
G2 = [-0.25, 0.5, 1.0]


def _arr(values, dtype):
    return np.array(values, dtype=dtype)


# --- SGD, by hand: lr = 0.1, momentum = 0.9, v0 = 0 ----------------------------------------------
#
# classical: v <- 0.9 v - 0.1 g;  theta += v
#   step 1: v1 = -0.1 g1 = [-0.05, 0.1, -0.2]
#           theta1 = [1 - 0.05, -2 + 0.1, 0.5 - 0.2] = [0.95, -1.9, 0.3]
#   step 2: v2 = 0.9 v1 - 0.1 g2 = [-0.045 + 0.025, 0.09 - 0.05, -0.18 - 0.1] = [-0.02, 0.04, -0.28]
#           theta2 = [0.95 - 0.02, -1.9 + 0.04, 0.3 - 0.28] = [0.93, -1.86, 0.02]
#
# nesterov: the same v, but theta += 0.9 v_new - 0.1 g
#   step 1: update = 0.9 v1 - 0.1 g1 = [-0.045 - 0.05, 0.09 + 0.1, -0.18 - 0.2]
#                  = [-0.095, 0.19, -0.38]
#           theta1 = [0.905, -1.81, 0.12]
#   step 2: v2 = [-0.02, 0.04, -0.28] as above
#           update = 0.9 v2 - 0.1 g2 = [-0.018 + 0.025, 0.036 - 0.05, -0.252 - 0.1]
#                  = [0.007, -0.014, -0.352]
#           theta2 = [0.912, -1.824, -0.232]
SGD_BY_HAND = {
    False: ([0.95, -1.9, 0.3], [-0.05, 0.1, -0.2], [0.93, -1.86, 0.02], [-0.02, 0.04, -0.28]),
    True: ([0.905, -1.81, 0.12], [-0.05, 0.1, -0.2], [0.912, -1.824, -0.232], [-0.02, 0.04, -0.28]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_two_steps_by_hand(nesterov, dtype):
    theta, vel = _arr(THETA0, dtype), np.zeros(3, dtype)
    th1, v1, th2, v2 = SGD_BY_HAND[nesterov]
    sgd_step(theta, _arr(G1, dtype), vel, 0.1, 0.9, nesterov)
    assert_allclose(theta, th1, **TOL[dtype])
    assert_allclose(vel, v1, **TOL[dtype])
    sgd_step(theta, _arr(G2, dtype), vel, 0.1, 0.9, nesterov)
    assert_allclose(theta, th2, **TOL[dtype])
    assert_allclose(vel, v2, **TOL[dtype])
    assert theta.dtype == dtype and vel.dtype == dtype


def test_sgd_without_momentum_is_plain_gradient_descent():
    theta = _arr(THETA0, np.float64)
    sgd_step(theta, _arr(G1, np.float64), np.zeros(3), 0.1, 0.0, False)
    assert_allclose(theta, [0.95, -1.9, 0.3], rtol=1e-15)


# --- Adam, by hand: lr = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, m0 = v0 = 0 ---------------
#
#   step 1: m1 = 0.1 g1 = [0.05, -0.1, 0.2];  v1 = 0.001 g1^2 = [0.00025, 0.001, 0.004]
#           lr_1 = 0.01 sqrt(1 - 0.999) / (1 - 0.9) = 0.1 sqrt(0.001) = 0.0031622776601684
#           sqrt(v1) = sqrt(0.001) |g1|, so the step is 0.01 sign(g1) sqrt(v1) / (sqrt(v1) + eps)
#           = 0.01 sign(g1) (1 - eps / sqrt(v1) + ...),
#           eps / sqrt(v1) = [6.3246e-7, 3.1623e-7, 1.5811e-7]
#           theta1 = [1 - 0.01 + 6.3246e-9, -2 + 0.01 - 3.1623e-9, 0.5 - 0.01 + 1.5811e-9]
#                  = [0.99000000632455, -1.99000000316228, 0.49000000158114]
#   step 2: m2 = 0.9 m1 + 0.1 g2 = 0.09 g1 + 0.1 g2 = [0.02, -0.04, 0.28]
#           v2 = 0.999 v1 + 0.001 g2^2 = 0.000999 g1^2 + 0.001 g2^2
#              = [0.00031225, 0.001249, 0.004996]
#           lr_2 = 0.01 sqrt(1 - 0.999^2) / (1 - 0.9^2) = 0.01 sqrt(0.001999) / 0.19
#                = 0.0023531672532745
#           sqrt(v2) = [0.0176705970, 0.0353411941, 0.0706823882]
#           lr_2 m2 / (sqrt(v2) + eps) = [0.0026633689, -0.0026633696, 0.0093217950]
#           theta2 = [0.98733663743518, -1.98733663351929, 0.48067820651185]
ADAM_M1, ADAM_V1 = [0.05, -0.1, 0.2], [0.00025, 0.001, 0.004]
ADAM_TH1 = [0.9900000063245513, -1.9900000031622767, 0.4900000015811386]
ADAM_M2, ADAM_V2 = [0.02, -0.04, 0.28], [0.00031225, 0.001249, 0.004996]
ADAM_TH2 = [0.9873366374351793, -1.9873366335192888, 0.4806782065118531]


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_two_steps_by_hand(dtype):
    theta, m, v = _arr(THETA0, dtype), np.zeros(3, dtype), np.zeros(3, dtype)
    adam_step(theta, _arr(G1, dtype), m, v, 0.01, 0.9, 0.999, 1e-8, 1.0)
    assert_allclose(m, ADAM_M1, **TOL[dtype])
    assert_allclose(v, ADAM_V1, rtol=TOL[dtype]["rtol"])
    assert_allclose(theta, ADAM_TH1, **TOL[dtype])
    adam_step(theta, _arr(G2, dtype), m, v, 0.01, 0.9, 0.999, 1e-8, 2.0)
    assert_allclose(m, ADAM_M2, **TOL[dtype])
    assert_allclose(v, ADAM_V2, rtol=2 * TOL[dtype]["rtol"])
    assert_allclose(theta, ADAM_TH2, **TOL[dtype])
    assert theta.dtype == dtype and m.dtype == dtype and v.dtype == dtype


def test_adam_first_step_moves_every_coordinate_by_lr():
    """Bias correction makes the first step lr * sign(g) (up to eps), whatever |g| is."""
    theta = np.zeros(4)
    g = np.array([1e-3, -5.0, 40.0, -0.2])
    adam_step(theta, g, np.zeros(4), np.zeros(4), 0.05, 0.9, 0.999, 1e-12, 1.0)
    assert_allclose(theta, -0.05 * np.sign(g), rtol=1e-7)  # eps / sqrt(v) <= 3.2e-8


# --- random vectors: kernel == reference, several steps ------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_reference(nesterov, dtype, rng):
    n = 37
    theta = rng.standard_normal(n).astype(dtype)
    vel = np.zeros(n, dtype)
    th_ref, v_ref = theta.astype(np.float64), np.zeros(n)
    for _ in range(4):
        g = rng.standard_normal(n).astype(dtype)
        sgd_step(theta, g, vel, 0.05, 0.8, nesterov)
        th_ref, v_ref = ref.sgd_step(th_ref, g, v_ref, 0.05, 0.8, nesterov)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else TOL[dtype]
    assert_allclose(theta, th_ref, **tol)
    assert_allclose(vel, v_ref, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_matches_reference(dtype, rng):
    n = 41
    theta = rng.standard_normal(n).astype(dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    th_ref, m_ref, v_ref = theta.astype(np.float64), np.zeros(n), np.zeros(n)
    for t in range(1, 6):
        g = (rng.standard_normal(n) * rng.uniform(0.01, 10, n)).astype(dtype)
        adam_step(theta, g, m, v, 0.003, 0.85, 0.995, 1e-7, float(t))
        th_ref, m_ref, v_ref = ref.adam_step(th_ref, g, m_ref, v_ref, 0.003, 0.85, 0.995, 1e-7, t)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else TOL[dtype]
    assert_allclose(theta, th_ref, **tol)
    assert_allclose(m, m_ref, **tol)
    assert_allclose(v, v_ref, rtol=tol["rtol"])


def test_adam_with_eps_below_float32s_tiniest(rng):
    """eps = 1e-50 is 0 in float32: the float32 loop would divide 0 by 0 where a gradient
    has been 0 (v = 0); the kernel then computes the step with float64 scalars, as the
    float64 reference does (no NaN, the zero-gradient coordinates stay where they are)."""
    n = 29
    theta = rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    th_ref, m_ref, v_ref = theta.astype(np.float64), np.zeros(n), np.zeros(n)
    for t in range(1, 4):
        g = rng.standard_normal(n).astype(np.float32)
        g[::4] = 0.0  # the same coordinates every step: their v stays 0
        adam_step(theta, g, m, v, 0.01, 0.9, 0.999, 1e-50, float(t))
        th_ref, m_ref, v_ref = ref.adam_step(th_ref, g, m_ref, v_ref, 0.01, 0.9, 0.999, 1e-50, t)
    assert np.isfinite(theta).all()
    assert_allclose(theta, th_ref, rtol=1e-5, atol=1e-6)
    assert_allclose(theta[::4], th_ref[::4], rtol=0, atol=0)  # never moved


# --- the reference follows scikit-learn ----------------------------------------------------------


@pytest.mark.parametrize("nesterov", [False, True])
def test_reference_sgd_is_sklearn(nesterov, rng):
    theta = rng.standard_normal(11)
    params = [theta.copy()]
    opt = SGDOptimizer(params, learning_rate_init=0.07, lr_schedule="constant", momentum=0.85,
                       nesterov=nesterov)
    th, v = theta, np.zeros(11)
    for _ in range(3):
        g = rng.standard_normal(11)
        opt.update_params(params, [g])
        th, v = ref.sgd_step(th, g, v, 0.07, 0.85, nesterov)
    assert_allclose(th, params[0], rtol=1e-14, atol=1e-15)


def test_reference_adam_is_sklearn(rng):
    theta = rng.standard_normal(11)
    params = [theta.copy()]
    opt = AdamOptimizer(params, learning_rate_init=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    th, m, v = theta, np.zeros(11), np.zeros(11)
    for t in range(1, 4):
        g = rng.standard_normal(11)
        opt.update_params(params, [g])
        th, m, v = ref.adam_step(th, g, m, v, 0.02, 0.8, 0.99, 1e-6, t)
    assert_allclose(th, params[0], rtol=1e-14, atol=1e-15)
